"""Config: precedence, lists, URL normalisation, validation, describe(), the sample file."""

import dataclasses
import json
import logging
import re
from pathlib import Path

import pytest

from mrmd_monitor import logs
from mrmd_monitor.config import (
    Config,
    ParserExit,
    build_parser,
    describe,
    load_config,
    normalize_sync_url,
    option_actions,
)
from mrmd_monitor.options import OPTIONS
from mrmd_monitor.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "contrib" / "monitor.ini"
URL = "ws://localhost:4444"


def write_ini(tmp_path, body, name="monitor.ini"):
    path = tmp_path / name
    path.write_text("[mrmd-monitor]\n" + body)
    return str(path)


# ---------------------------------------------------------------- defaults


def test_defaults():
    config = load_config([URL], env={})
    assert config == Config(
        sync_url=URL,
        docs=(),
        name="mrmd-monitor",
        log_level="info",
        log_format="text",
        log_file=None,
        max_workers=8,
        flush_interval=0.05,
        block_wait=1.0,
        grace=3.0,
        connect_timeout=10.0,
        idle_timeout=300.0,
        reconnect_max=30.0,
        config_file=None,
        sources=config.sources,
    )
    sources = dict(config.sources)
    assert sources["sync-url"] == "command line"
    assert all(src == "default" for opt, src in sources.items() if opt != "sync-url")


def test_config_is_frozen():
    config = load_config([URL], env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_workers = 3


def test_environment_is_injectable_and_os_environ_is_ignored(monkeypatch):
    monkeypatch.setenv("MRMD_MONITOR_MAX_WORKERS", "5")
    assert load_config([URL], env={}).max_workers == 8
    assert load_config([URL], env={"MRMD_MONITOR_MAX_WORKERS": "4"}).max_workers == 4
    assert load_config([URL]).max_workers == 5  # env=None reads os.environ


# ---------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    "option, env_var, key, values, attr",
    [
        ("--max-workers", "MRMD_MONITOR_MAX_WORKERS", "max-workers", ("2", "3", "4"), "max_workers"),
        ("--grace", "MRMD_MONITOR_GRACE", "grace", ("1.5", "2.5", "3.5"), "grace"),
        ("--name", "MRMD_MONITOR_NAME", "name", ("cli", "env", "file"), "name"),
        ("--log-level", "MRMD_MONITOR_LOG_LEVEL", "log-level", ("debug", "error", "warn"), "log_level"),
    ],
)
def test_precedence_cli_env_file_default(tmp_path, option, env_var, key, values, attr):
    cli, env, file = values
    ini = write_ini(tmp_path, f"{key} = {file}\n")
    convert = type(getattr(load_config([URL], env={}), attr))

    def expect(raw):
        return "warning" if raw == "warn" else convert(raw)

    everything = load_config(["-c", ini, option, cli, URL], env={env_var: env})
    assert getattr(everything, attr) == expect(cli)
    assert everything.source_of(key) == "command line"

    no_cli = load_config(["-c", ini, URL], env={env_var: env})
    assert getattr(no_cli, attr) == expect(env)
    assert no_cli.source_of(key) == f"environment {env_var}"

    file_only = load_config(["-c", ini, URL], env={})
    assert getattr(file_only, attr) == expect(file)
    assert file_only.source_of(key) == f"config file {ini}"

    default = load_config([URL], env={})
    assert default.source_of(key) == "default"


def test_option_equals_form_counts_as_command_line(tmp_path):
    config = load_config(["--max-workers=2", URL], env={"MRMD_MONITOR_MAX_WORKERS": "3"})
    assert config.max_workers == 2
    assert config.source_of("max-workers") == "command line"


def test_config_file_from_environment(tmp_path):
    ini = write_ini(tmp_path, "max-workers = 6\n")
    config = load_config([URL], env={"MRMD_MONITOR_CONFIG": ini})
    assert config.max_workers == 6
    assert config.config_file == ini
    assert config.source_of("config") == "environment MRMD_MONITOR_CONFIG"


def test_config_file_source_is_recorded(tmp_path):
    ini = write_ini(tmp_path, "")
    config = load_config(["-c", ini, URL], env={})
    assert config.config_file == ini
    assert config.source_of("config") == "command line"


# ---------------------------------------------------------------- sync URL


@pytest.mark.parametrize(
    "given, expected",
    [
        ("localhost:4444", "ws://localhost:4444"),
        ("ws://localhost:4444", "ws://localhost:4444"),
        ("ws://localhost:4444/", "ws://localhost:4444"),
        ("wss://sync.example.org/", "wss://sync.example.org"),
        ("WSS://sync.example.org/rooms//", "wss://sync.example.org/rooms"),
        ("  127.0.0.1:1234  ", "ws://127.0.0.1:1234"),
        ("[::1]:4444", "ws://[::1]:4444"),
    ],
)
def test_sync_url_normalisation(given, expected):
    assert normalize_sync_url(given) == expected
    assert load_config([given.strip()], env={}).sync_url == expected


def test_sync_url_from_environment_and_file(tmp_path):
    config = load_config([], env={"MRMD_MONITOR_SYNC_URL": "localhost:1"})
    assert config.sync_url == "ws://localhost:1"
    assert config.source_of("sync-url") == "environment MRMD_MONITOR_SYNC_URL"

    ini = write_ini(tmp_path, "sync-url = wss://example.org/\n")
    config = load_config(["-c", ini], env={})
    assert config.sync_url == "wss://example.org"
    assert config.source_of("sync-url") == f"config file {ini}"

    # the positional argument beats both
    config = load_config(["-c", ini, "localhost:2"], env={"MRMD_MONITOR_SYNC_URL": "localhost:1"})
    assert config.sync_url == "ws://localhost:2"
    assert config.source_of("sync-url") == "command line"

    # the environment beats the file
    config = load_config(["-c", ini], env={"MRMD_MONITOR_SYNC_URL": "localhost:1"})
    assert config.sync_url == "ws://localhost:1"


def test_sync_url_option_on_command_line():
    config = load_config(["--sync-url", "localhost:3"], env={})
    assert config.sync_url == "ws://localhost:3"
    assert config.source_of("sync-url") == "command line"


# ---------------------------------------------------------------- --doc


def test_doc_repeatable_on_command_line():
    config = load_config(["--doc", "a.md", URL, "--doc=b.md", "--doc", "a.md"], env={})
    assert config.docs == ("a.md", "b.md")  # order kept, duplicates dropped
    assert config.source_of("doc") == "command line"


def test_doc_list_in_config_file_one_per_line(tmp_path):
    ini = write_ini(tmp_path, "doc =\n    a.md\n    # a comment\n    dir/b.md\n")
    config = load_config(["-c", ini, URL], env={})
    assert config.docs == ("a.md", "dir/b.md")
    assert config.source_of("doc") == f"config file {ini}"


def test_doc_list_literal_and_single_value_in_config_file(tmp_path):
    ini = write_ini(tmp_path, 'doc = ["a.md", "b.md"]\n')
    assert load_config(["-c", ini, URL], env={}).docs == ("a.md", "b.md")
    ini = write_ini(tmp_path, "doc = only.md\n", name="single.ini")
    assert load_config(["-c", ini, URL], env={}).docs == ("only.md",)


def test_doc_on_command_line_replaces_file_list(tmp_path):
    ini = write_ini(tmp_path, "doc =\n    a.md\n    b.md\n")
    config = load_config(["-c", ini, "--doc", "c.md", URL], env={})
    assert config.docs == ("c.md",)


def test_doc_from_environment():
    assert load_config([URL], env={"MRMD_MONITOR_DOC": "x.md"}).docs == ("x.md",)
    assert load_config([URL], env={"MRMD_MONITOR_DOC": '["x.md", "y.md"]'}).docs == ("x.md", "y.md")


def test_log_file_dash_means_stderr():
    assert load_config([URL, "--log-file", "-"], env={}).log_file is None
    assert load_config([URL, "--log-file", "/tmp/m.log"], env={}).log_file == "/tmp/m.log"


# ---------------------------------------------------------------- bad values


def assert_one_line_error(argv, env=None, match=None):
    with pytest.raises(ConfigError) as info:
        load_config(argv, env={} if env is None else env)
    message = str(info.value)
    assert message and "\n" not in message
    if match:
        assert re.search(match, message), message
    return message


@pytest.mark.parametrize(
    "argv, match",
    [
        ([URL, "--max-workers", "0"], r"--max-workers.*at least 1"),
        ([URL, "--max-workers", "-3"], r"--max-workers"),
        ([URL, "--max-workers", "many"], r"--max-workers.*whole number"),
        ([URL, "--log-level", "loud"], r"--log-level.*'loud'"),
        ([URL, "--log-format", "xml"], r"--log-format"),
        ([URL, "--flush-interval", "soon"], r"--flush-interval.*number"),
        ([URL, "--flush-interval", "-0.1"], r"--flush-interval.*>= 0"),
        ([URL, "--grace", "nan"], r"--grace"),
        ([URL, "--connect-timeout", "0"], r"--connect-timeout.*> 0"),
        ([URL, "--reconnect-max", "inf"], r"--reconnect-max"),
        ([URL, "--name", "  "], r"--name"),
        ([URL, "--doc", ""], r"--doc"),
        ([], r"sync URL is required"),
        (["http://localhost:4444"], r"ws:// or wss://"),
        (["https://example.org"], r"ws:// or wss://"),
        (["ws://"], r"no host"),
        (["ws://host:notaport"], r"not valid"),
        ([URL, "--bogus"], r"unrecognized arguments: --bogus"),
        ([URL, "extra"], r"unrecognized arguments: extra"),
        ([URL, "--sync-url", URL], r"once"),
        ([URL, "--max-workers"], r"expected one argument"),
        (["-c", "/nonexistent/monitor.ini", URL], r"/nonexistent/monitor.ini"),
    ],
)
def test_bad_values_raise_one_line_config_error(argv, match):
    assert_one_line_error(argv, match=match)


def test_bad_env_value_names_the_variable():
    message = assert_one_line_error([URL], env={"MRMD_MONITOR_MAX_WORKERS": "0"})
    assert "MRMD_MONITOR_MAX_WORKERS" in message


def test_bad_sync_url_from_environment_names_the_variable():
    message = assert_one_line_error([], env={"MRMD_MONITOR_SYNC_URL": "http://x"})
    assert "ws:// or wss://" in message and "MRMD_MONITOR_SYNC_URL" in message


def test_bad_file_value_names_the_file(tmp_path):
    ini = write_ini(tmp_path, "grace = -1\n")
    message = assert_one_line_error(["-c", ini, URL])
    assert ini in message and "--grace" in message


def test_unknown_key_in_config_file(tmp_path):
    ini = write_ini(tmp_path, "max_workers = 3\n")
    message = assert_one_line_error(["-c", ini, URL])
    assert "max_workers" in message and ini in message


def test_unparsable_config_file_is_one_line(tmp_path):
    path = tmp_path / "broken.ini"
    path.write_text("no section header\nat all\n")
    message = assert_one_line_error(["-c", str(path), URL])
    assert str(path) in message


def test_other_sections_are_ignored(tmp_path):
    path = tmp_path / "shared.ini"
    path.write_text("[something-else]\nmax-workers = 99\n[mrmd-monitor]\nmax-workers = 2\n")
    assert load_config(["-c", str(path), URL], env={}).max_workers == 2


def test_help_and_version_raise_parser_exit(capsys):
    with pytest.raises(ParserExit) as info:
        load_config(["--help"], env={})
    assert info.value.code == 0
    with pytest.raises(ParserExit):
        load_config(["--version"], env={})
    assert "mrmd-monitor 0" in capsys.readouterr().out


# ---------------------------------------------------------------- describe


def test_describe_names_every_value_and_its_source(tmp_path):
    ini = write_ini(tmp_path, "grace = 4\n")
    config = load_config(
        ["-c", ini, "--doc", "a.md", "--doc", "b.md", URL],
        env={"MRMD_MONITOR_MAX_WORKERS": "3"},
    )
    line = describe(config)
    assert "\n" not in line
    assert f"sync-url={URL} (command line)" in line
    assert "doc=a.md,b.md (command line)" in line
    assert "max-workers=3 (environment MRMD_MONITOR_MAX_WORKERS)" in line
    assert f"grace=4.0 (config file {ini})" in line
    assert "name=mrmd-monitor (default)" in line
    assert "log-file=stderr (default)" in line
    for option, _ in config.sources:
        assert f"{option}=" in line


def test_describe_masks_secret_options():
    @dataclasses.dataclass(frozen=True)
    class WithSecrets:
        sync_url: str
        auth_token: str
        runtime_password: str
        name: str
        sources: tuple = (("auth-token", "environment MRMD_MONITOR_AUTH_TOKEN"),)

    line = describe(WithSecrets(URL, "s3cr3t-tok", "hunter2", "mon"))
    assert "s3cr3t-tok" not in line and "hunter2" not in line
    assert "auth-token=*** (environment MRMD_MONITOR_AUTH_TOKEN)" in line
    assert "runtime-password=*** (default)" in line
    assert "name=mon" in line


def test_describe_masks_credentials_in_the_sync_url():
    config = load_config(["wss://user:hunter2@sync.example.org/?token=abc&room=x"], env={})
    line = describe(config)
    assert "hunter2" not in line and "abc" not in line
    assert "user:***@sync.example.org" in line and "room=x" in line
    assert config.sync_url.startswith("wss://user:hunter2@")  # only the description is masked


# ---------------------------------------------------------------- the sample file


def sample_defaults():
    """key -> the value shown in a '#key = value' line of contrib/monitor.ini."""
    found = {}
    for line in SAMPLE.read_text().splitlines():
        match = re.match(r"^#([a-z][a-z-]*) =(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def test_sample_lists_every_option_with_its_default():
    parser = build_parser()
    shown = sample_defaults()
    actions = option_actions(parser)
    assert set(shown) == set(actions) == {o.name for o in OPTIONS}, \
        "contrib/monitor.ini, the parser and the option table disagree"
    for option in OPTIONS:
        if option.default not in (None, ()) and not option.many:
            assert shown[option.name] == str(option.default), option.name


def sample_comments():
    """key -> the comment block just above its '#key =' line in contrib/monitor.ini."""
    found, block = {}, []
    for line in SAMPLE.read_text().splitlines():
        match = re.match(r"^#([a-z][a-z-]*) =", line)
        if match:
            found[match.group(1)] = " ".join(block)
            block = []
        elif line.startswith("# ") or line == "#":
            block.append(line[2:])
        else:
            block = []
    return found


def test_sample_says_restart_exactly_for_the_options_a_hup_cannot_change():
    comments = sample_comments()
    for option in OPTIONS:
        assert ("Restart." in comments[option.name]) == (not option.reloadable), option.name


def test_every_option_has_its_own_environment_variable_in_help():
    parser = build_parser()
    actions = option_actions(parser)
    for option in OPTIONS:
        assert option.env == "MRMD_MONITOR_" + option.name.upper().replace("-", "_")
        assert actions[option.name].env_var == option.env
        assert load_config([URL], env={}).source_of(option.name) in ("default", "command line")


def test_the_config_has_one_field_per_option_with_the_table_default():
    config = load_config([URL], env={})
    fields = [f.name for f in dataclasses.fields(config)]
    assert fields == ["sync_url"] + [o.field for o in OPTIONS if o.field != "sync_url"] + [
        "config_file", "sources"]
    for option in OPTIONS:
        if option.field != "sync_url":
            assert getattr(config, option.field) == option.default, option.name


def test_every_option_comes_from_the_environment():
    for option in OPTIONS:
        value = {"sync-url": "ws://h:1", "log-level": "debug", "log-format": "json",
                 "status-addr": "9", "name": "x", "max-message-bytes": "64K", "worker-share": "0.7",
                 "cluster-secret-file": __file__}.get(option.name, "7")
        config = load_config([] if option.name == "sync-url" else [URL], env={option.env: value})
        assert config.source_of(option.name) == "environment " + option.env, option.name


def test_restart_only_options_are_marked_in_help(capsys):
    with pytest.raises(ParserExit):
        load_config(["--help"], env={})
    out = " ".join(capsys.readouterr().out.split())
    assert "a HUP does not change it" in out
    assert "HUP loads the configuration again" in out
    assert "follows every document the server lists at /stats" in out


def test_sample_parses_as_is():
    config = load_config(["-c", str(SAMPLE), URL], env={})
    assert config.config_file == str(SAMPLE)
    assert all(src == "default" for opt, src in config.sources if opt not in ("sync-url", "config"))


def test_sample_with_one_option_uncommented(tmp_path):
    text = SAMPLE.read_text().replace("#max-workers = 8", "max-workers = 3")
    path = tmp_path / "monitor.ini"
    path.write_text(text)
    config = load_config(["-c", str(path), URL], env={})
    assert config.max_workers == 3
    assert config.source_of("max-workers") == f"config file {path}"


def test_sample_with_everything_uncommented(tmp_path):
    lines = []
    for line in SAMPLE.read_text().splitlines():
        if re.match(r"^#[a-z][a-z-]* =", line) or re.match(r"^#    \S", line):
            line = line[1:]
        lines.append(line)
    path = tmp_path / "monitor.ini"
    path.write_text("\n".join(lines) + "\n")
    config = load_config(["-c", str(path)], env={})
    assert config.sync_url == URL
    assert config.docs == ("notebook.md", "notes/other.md")
    assert config.log_file == "/var/log/mrmd-monitor/monitor.log"
    default = load_config([URL], env={})
    for field in ("name", "log_level", "log_format", "max_workers", "flush_interval",
                  "block_wait", "grace", "connect_timeout", "idle_timeout", "reconnect_max"):
        assert getattr(config, field) == getattr(default, field), field


# ---------------------------------------------------------------- logging


@pytest.fixture
def clean_root_logger():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def ours(root):
    return [h for h in root.handlers if getattr(h, "_mrmd_monitor_handler", False)]


def test_json_log_lines(tmp_path, clean_root_logger):
    path = tmp_path / "monitor.log"
    logs.setup_logging(load_config([URL, "--log-format", "json", "--log-file", str(path)], env={}))
    log = logging.getLogger("mrmd_monitor.test")
    log.info("claimed %s", "e1", extra={"doc": "a.md", "exec_id": "e1"})
    log.debug("not shown at info")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("run failed", extra={"exec_id": "e2"})

    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "claimed e1"
    assert first["level"] == "info"
    assert first["logger"] == "mrmd_monitor.test"
    assert first["thread"] == "MainThread"
    assert first["doc"] == "a.md" and first["exec_id"] == "e1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    assert "doc" not in second and second["exec_id"] == "e2"
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exc"]


def test_text_format_and_idempotent_setup(capsys, clean_root_logger):
    config = load_config([URL, "--log-level", "warn"], env={})
    logs.setup_logging(config)
    logs.setup_logging(config)
    assert len(ours(clean_root_logger)) == 1
    assert clean_root_logger.level == logging.WARNING
    logging.getLogger("mrmd_monitor.x").warning("hello")
    err = capsys.readouterr().err
    assert re.search(r"WARNING \[MainThread\] mrmd_monitor\.x: hello$", err.strip())
    assert err.count("hello") == 1


def test_log_file_reopen_after_rotation(tmp_path, clean_root_logger):
    path = tmp_path / "monitor.log"
    logs.setup_logging(load_config([URL, "--log-file", str(path)], env={}))
    log = logging.getLogger("mrmd_monitor.rot")
    log.info("before")
    path.rename(tmp_path / "monitor.log.1")
    logs.reopen_logs()
    assert path.exists()
    log.info("after")
    assert "after" in path.read_text() and "before" not in path.read_text()
    assert "before" in (tmp_path / "monitor.log.1").read_text()


def test_unopenable_log_file_is_a_config_error(tmp_path, clean_root_logger):
    config = load_config([URL, "--log-file", str(tmp_path / "missing-dir" / "m.log")], env={})
    with pytest.raises(ConfigError, match="cannot open log file"):
        logs.setup_logging(config)
