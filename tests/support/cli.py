"""The command line in this process, as the tests run it."""

from __future__ import annotations


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``caffe-harness ARGV`` through :func:`harness.cli.main`: (exit status, stdout, stderr), read from pytest's
    ``capsys``."""
    from harness.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str, words=()) -> str:
    """The CLI's one ``caffe-harness: error: `` line on stderr (notices aside), asserted to hold each of ``words``."""
    lines = [x for x in err.strip().splitlines() if not x.startswith("caffe-harness: notice: ")]
    assert len(lines) == 1 and lines[0].startswith("caffe-harness: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]
