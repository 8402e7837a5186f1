"""The command line in this process, as the tests run it."""

from __future__ import annotations


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``caffe-harness ARGV`` through :func:`harness.cli.main`: (exit status, stdout, stderr), read from pytest's
    ``capsys``."""
    from harness.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err
