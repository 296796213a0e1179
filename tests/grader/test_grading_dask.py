"""``course grade --scheduler``: a Dask cluster grades, ``course grade`` merges.

The cluster is a ``LocalCluster`` of worker processes speaking TLS with certificates that
openssl makes for the test, as the README tells an instructor to; tcp:// is refused unless
asked for, and a worker without a working sandbox refuses to grade.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from adversarial.cases import ASSIGNMENT, MAX
from grading_course import course, filled, grades, latest_report, make_course, submit

distributed = pytest.importorskip("distributed", reason="Dask is not installed: pip install 'dask[distributed]'")
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap not installed (make test installs it)")
WRONG = "def attention(q, k, v, mask=None):\n    return q, q"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    """A CA and one certificate it signed for the scheduler, the workers and the client (PEM files)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: it makes the test's certificates")
    folder = tmp_path_factory.mktemp("tls")
    run = lambda *args: subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=course test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem",
        "-days", "1", "-extfile", "san.cnf")
    return {"ca": folder / "ca.pem", "cert": folder / "node.pem", "key": folder / "node.key"}


def tls_cluster(certs: dict[str, Path], **worker_options) -> "distributed.LocalCluster":
    security = distributed.Security(tls_ca_file=str(certs["ca"]), tls_scheduler_cert=str(certs["cert"]),
                                    tls_scheduler_key=str(certs["key"]), tls_worker_cert=str(certs["cert"]),
                                    tls_worker_key=str(certs["key"]), tls_client_cert=str(certs["cert"]),
                                    tls_client_key=str(certs["key"]), require_encryption=True)
    return distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, protocol="tls://",
                                    host="127.0.0.1", dashboard_address=None, security=security, **worker_options)


def tls_flags(certs: dict[str, Path]) -> list[str]:
    return ["--tls-ca", str(certs["ca"]), "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])]


@needs_bwrap
def test_a_tls_cluster_of_worker_processes_grades_as_local_grading_does(tmp_path, certificates):
    local, remote = (make_course(tmp_path / name, [ASSIGNMENT]) for name in ("local", "remote"))
    for folder in (local, remote):
        submit(folder, "alice", ASSIGNMENT, filled(ASSIGNMENT))
        submit(folder, "bob", ASSIGNMENT, filled(ASSIGNMENT, attention=WRONG))
    done = course(local, "grade", ASSIGNMENT, "--workers", "2", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    with tls_cluster(certificates) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        done = course(remote, "grade", ASSIGNMENT, "--scheduler", cluster.scheduler_address,
                      *tls_flags(certificates), "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert grades(remote, ASSIGNMENT) == grades(local, ASSIGNMENT)   # cell by cell
    assert {name: sum(cells.values()) for name, cells in grades(remote, ASSIGNMENT).items()} == {
        "alice": MAX, "bob": MAX - 3}
    assert {row["status"] for row in latest_report(remote).values()} == {"ok"}
    assert (remote / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()


@needs_bwrap
def test_a_worker_without_a_sandbox_refuses_and_nothing_is_graded(tmp_path, certificates):
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    submit(folder, "alice", ASSIGNMENT, filled(ASSIGNMENT))
    no_bwrap = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "bwrap").exists())
    with tls_cluster(certificates, env={"PATH": no_bwrap}) as cluster:
        done = course(folder, "grade", ASSIGNMENT, "--scheduler", cluster.scheduler_address, *tls_flags(certificates))
    assert done.returncode != 0
    assert "no working sandbox" in done.stderr and "bubblewrap" in done.stderr, done.stderr
    assert not (folder / "autograded").exists() and grades(folder, ASSIGNMENT) == {}


@pytest.mark.parametrize("flags, says", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "unencrypted and unauthenticated"),
    (["--scheduler", "127.0.0.1:8786"], "unencrypted and unauthenticated"),
    (["--scheduler", "tls://127.0.0.1:8786"], "needs --tls-ca and --tls-cert"),
    (["--scheduler", "tls://127.0.0.1:8786", "--tls-ca", "/no/ca.pem", "--tls-cert", "/no/c.pem"],
     "no such certificate"),
    (["--scheduler", "ws://127.0.0.1:8786"], "unsupported scheduler address"),
])
def test_an_unsafe_or_incomplete_scheduler_address_is_refused_before_anything_runs(tmp_path, flags, says):
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    submit(folder, "alice", ASSIGNMENT, filled(ASSIGNMENT))
    done = course(folder, "grade", ASSIGNMENT, *flags)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert not (folder / "autograded").exists()


@needs_bwrap
def test_insecure_tcp_grades_when_asked_for_with_a_warning(tmp_path):
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    submit(folder, "alice", ASSIGNMENT, filled(ASSIGNMENT))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        done = course(folder, "grade", ASSIGNMENT, "--scheduler", cluster.scheduler_address, "--insecure-tcp",
                      "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING: --insecure-tcp" in done.stderr
    assert sum(grades(folder, ASSIGNMENT)["alice"].values()) == MAX
