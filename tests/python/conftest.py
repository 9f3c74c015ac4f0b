"""Shared by every test here: the answer commands they run record their
questions (the access dataset, `--access-dir`) in a directory of the
session, never in the working directory. A test that checks access rows
passes `--access-dir` itself."""

import os
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def access_dir():
    with tempfile.TemporaryDirectory(prefix="audit-access-") as d:
        os.environ["AUDIT_ACCESS_DIR"] = d
        yield d

