"""options.py: the value types every option goes through, the table's derived
names, and the README's option table checked against it."""

import argparse
import re
from pathlib import Path

import pytest

from mrmd_monitor.options import (
    BY_NAME,
    OPTIONS,
    at_least_one,
    fraction,
    host_address,
    log_format,
    log_level,
    message_size,
    replicas_count,
    restart_only_fields,
    seconds_above_zero,
    seconds_at_least_zero,
    secret_fields,
    size_in_bytes,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def refused(convert, value):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        convert(value)
    return str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("1048576", 1048576), ("512K", 512 * 1024), ("2M", 2 * 1024 ** 2), ("1G", 1024 ** 3),
    ("2m", 2 * 1024 ** 2), ("64KB", 64 * 1024), (" 0 ", 0)])
def test_sizes_are_powers_of_1024(text, expected):
    assert size_in_bytes(text) == expected


@pytest.mark.parametrize("text", ["-1", "2T", "1.5M", "M", "", "lots"])
def test_a_bad_size_says_what_was_expected(text):
    assert repr(text) in refused(size_in_bytes, text)


def test_seconds_must_be_finite_and_in_range():
    assert seconds_at_least_zero("0") == 0.0 and seconds_at_least_zero("0.05") == 0.05
    for text in ("nan", "inf", "-inf"):
        assert "finite" in refused(seconds_at_least_zero, text)
    assert ">= 0" in refused(seconds_at_least_zero, "-1")
    assert "> 0" in refused(seconds_above_zero, "0")
    assert "number of seconds" in refused(seconds_above_zero, "soon")


def test_counts_fractions_and_message_sizes():
    assert at_least_one(" 3 ") == 3
    assert "at least 1" in refused(at_least_one, "0")
    assert "whole number" in refused(at_least_one, "1.5")
    assert fraction("1") == 1.0 and fraction("0.25") == 0.25
    for text in ("0", "1.5", "-0.5"):
        assert "above 0 and at most 1" in refused(fraction, text)
    assert message_size("4K") == 4096
    assert "at least 4K" in refused(message_size, "4095")


@pytest.mark.parametrize("text, expected", [
    ("9464", "127.0.0.1:9464"), (":9464", "127.0.0.1:9464"), ("0.0.0.0:80", "0.0.0.0:80"),
    ("[::1]:9464", "::1:9464"), ("localhost:0", "localhost:0")])
def test_a_status_address_without_host_is_loopback(text, expected):
    assert host_address(text) == expected


@pytest.mark.parametrize("text", ["70000", "127.0.0.1:-1", "host:port", "127.0.0.1:"])
def test_a_bad_status_address_is_refused(text):
    refused(host_address, text)


def test_replicas_all_or_zero_mean_every_monitor():
    assert replicas_count("all") is None and replicas_count(" ALL ") is None
    assert replicas_count("0") is None
    assert replicas_count("2") == 2
    assert "'all' or at least 1" in refused(replicas_count, "-1")
    assert "'all' or a whole number" in refused(replicas_count, "some")


def test_log_level_and_format_names():
    assert log_level("WARN") == "warning" and log_level("Debug") == "debug"
    assert "verbose" in refused(log_level, "verbose")
    assert log_format(" JSON ") == "json"
    assert "text or json" in refused(log_format, "xml")


def test_each_option_has_its_variable_and_field_from_its_name():
    option = BY_NAME["max-output-bytes"]
    assert option.env == "MRMD_MONITOR_MAX_OUTPUT_BYTES"
    assert option.field == "max_output_bytes"
    assert BY_NAME["doc"].field == "docs"   # a repeatable option keeps a plural field
    assert len({o.name for o in OPTIONS}) == len({o.env for o in OPTIONS}) == len(OPTIONS)


def test_the_token_is_the_secret_and_connections_need_a_restart():
    assert secret_fields() == ("token", "cluster_secret", "cluster_secret_from_file")
    restart = restart_only_fields()
    for field in ("sync_url", "docs", "max_workers", "status_addr", "assets_dir"):
        assert field in restart
    for field in ("log_level", "grace", "allow_runtime", "token", "max_output_bytes"):
        assert field not in restart


def test_a_default_written_out_reads_back_as_itself():
    """contrib/monitor.ini shows each default as text: uncommenting its line
    must change nothing."""
    for option in OPTIONS:
        if option.type is None or option.default in (None, ()):
            continue
        assert option.type(str(option.default)) == option.default, option.name


def readme_option_rows():
    text = README.read_text(encoding="utf-8")
    start = text.index("## Main options")
    section = text[start:text.index("\n## ", start + 1)]
    names = set(re.findall(r"`--([a-z][a-z-]*)", section))
    rows = re.findall(r"^\| `--([a-z][a-z-]*)[^`]*` \| ([^|]+) \|", section, re.M)
    return names, rows


def test_the_readme_names_real_options_with_their_defaults():
    names, rows = readme_option_rows()
    assert rows, "the README's table of main options is gone"
    assert names <= set(BY_NAME), "the README names options that do not exist"
    for name, cell in rows:
        option = BY_NAME[name]
        said = cell.replace("`", "").strip()
        if option.default in (None, ()):
            assert said.split(":")[0] == option.shown_default.split(":")[0], name
        elif said != option.shown_default:
            assert option.type is not None and option.type(said) == option.default, name
