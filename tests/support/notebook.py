"""Markdown pieces the end-to-end tests build notebooks from and check them against."""

import uuid

FINAL = ("completed", "error", "cancelled")


def cell(code, lang="python"):
    return "```%s\n%s\n```" % (lang, code)


def block(exec_id, content=""):
    return "```output:%s\n%s```" % (exec_id, content)


def block_content(text, exec_id):
    start = text.index("```output:%s\n" % exec_id) + len("```output:%s\n" % exec_id)
    return text[start:text.index("```", start)]


def uid():
    return uuid.uuid4().hex[:10]
