"""--web.config.file: TLS, client certificates and basic auth on the real agent, checked with curl (and Debian's
Prometheus: tests/lab/test_web_config_prometheus.py); malformed files are one-line errors."""

import base64
import http.client
import shutil
import socket
import ssl
import statistics
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest

from tests.support.agent import Agent, lxcwatch_binary
from tests.support.paths import HOSTS

PASSWORD = "s3cret scrape"
REALM = 'WWW-Authenticate: Basic realm="lxcwatch"'

pytestmark = pytest.mark.skipif(not shutil.which("openssl") or not shutil.which("curl"), reason="needs openssl and curl")


def tree_args(lxc: Path) -> list[str]:
    return [f"--path.procfs={HOSTS / 'tg3-pair' / 'proc'}", f"--path.sysfs={HOSTS / 'tg3-pair' / 'sys'}",
            f"--path.lxc={lxc}", "--sample.interval=200ms"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def issue(directory: Path, ca: str, name: str, ext: str) -> None:
    """name.key and name.crt signed by ca.crt/ca.key, with the extensions in `ext`."""
    (directory / f"{name}.ext").write_text(ext + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca (server and client certificates) and other-ca (a client certificate the agent must refuse)."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    issue(d, "ca", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    issue(d, "ca", "client", "extendedKeyUsage=clientAuth")
    issue(d, "other-ca", "stranger", "extendedKeyUsage=clientAuth")
    return d


@pytest.fixture(scope="module")
def hashed() -> str:
    # htpasswd's prefix: the form users paste from `htpasswd -nBC 10`
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$", 1)


def write_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def client_context(pki: Path, cert: str | None = "client") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
    return ctx


def curl(url: str, *args: str) -> subprocess.CompletedProcess:
    """-i: the status line and headers come before the body."""
    return subprocess.run(["curl", "-sS", "-i", "--max-time", "10", *args, url], capture_output=True, text=True,
                          timeout=30, check=False)


def status(out: subprocess.CompletedProcess) -> int:
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split(None, 2)[1])


def test_tls_with_verified_client_certificates(pki, tmp_path):
    # Relative paths: relative to the file's directory, whatever the agent's working directory.
    config = write_config(pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                               "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n")
    agent = Agent([f"--web.config.file={config}", *tree_args(tmp_path)], ssl_context=client_context(pki), cwd="/")
    try:
        base = f"https://127.0.0.1:{agent.port}"
        ok = curl(base + "/metrics", "--cacert", str(pki / "ca.crt"), "--cert", str(pki / "client.crt"),
                  "--key", str(pki / "client.key"))
        assert status(ok) == 200 and 'lxcwatch_link_info{device="eth0"' in ok.stdout
        landing = curl(base + "/", "--cacert", str(pki / "ca.crt"), "--cert", str(pki / "client.crt"),
                       "--key", str(pki / "client.key"))
        assert status(landing) == 200 and 'href="/metrics"' in landing.stdout

        plain = curl(f"http://127.0.0.1:{agent.port}/metrics")
        assert plain.returncode != 0 and "lxcwatch_" not in plain.stdout, plain
        no_cert = curl(base + "/metrics", "--cacert", str(pki / "ca.crt"))
        assert no_cert.returncode != 0 and "lxcwatch_" not in no_cert.stdout, no_cert
        stranger = curl(base + "/metrics", "--cacert", str(pki / "ca.crt"), "--cert", str(pki / "stranger.crt"),
                        "--key", str(pki / "stranger.key"))
        assert stranger.returncode != 0 and "lxcwatch_" not in stranger.stdout, stranger
        unknown_server = curl(base + "/metrics", "--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"))
        assert unknown_server.returncode == 60, unknown_server  # curl: the server's CA is not trusted

        # A client that never finishes its handshake holds up no one else.
        with socket.create_connection(("127.0.0.1", agent.port)):
            again = curl(base + "/metrics", "--cacert", str(pki / "ca.crt"), "--cert", str(pki / "client.crt"),
                         "--key", str(pki / "client.key"), "--max-time", "5")
            assert status(again) == 200
        assert agent.proc.poll() is None
    finally:
        agent.stop()


def test_basic_auth_and_headers(pki, tmp_path, hashed):
    config = write_config(tmp_path, f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n"
                                    f"  key_file: {pki / 'server.key'}\n  min_version: TLS13\n"
                                    f"basic_auth_users:\n  alice: '{hashed}'\n"
                                    "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    agent = Agent([f"--web.config.file={config}", *tree_args(tmp_path)], ssl_context=client_context(pki, None),
                  auth=("alice", PASSWORD))
    try:
        base = f"https://127.0.0.1:{agent.port}"
        tls = ("--cacert", str(pki / "ca.crt"))
        for path in ("/metrics", "/"):
            right = curl(base + path, *tls, "-u", f"alice:{PASSWORD}")
            assert status(right) == 200 and "X-Frame-Options: deny" in right.stdout
            for who in (["-u", "alice:wrong"], ["-u", f"mallory:{PASSWORD}"], []):
                refused = curl(base + path, *tls, *who)
                assert status(refused) == 401, (path, who)
                assert REALM in refused.stdout and "X-Frame-Options: deny" in refused.stdout
                assert "lxcwatch_" not in refused.stdout
        old = curl(base + "/metrics", *tls, "-u", f"alice:{PASSWORD}", "--tls-max", "1.2")  # min_version: TLS13
        assert old.returncode != 0 and "lxcwatch_" not in old.stdout, old
    finally:
        agent.stop()


def timed_status(port: int, user: str, password: str) -> tuple[float, int]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        start = time.perf_counter()
        conn.request("GET", "/", headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - start, response.status
    finally:
        conn.close()


@pytest.mark.slow
def test_an_unknown_user_costs_as_much_as_a_wrong_password(tmp_path, hashed):
    config = write_config(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    agent = Agent([f"--web.config.file={config}", *tree_args(tmp_path)], auth=("alice", PASSWORD))
    times: dict[str, list[float]] = {"unknown": [], "wrong": [], "right": []}
    try:
        for _ in range(25):  # interleaved, so a slow spell of the machine hits all three alike
            for kind, user, password in (("unknown", "mallory", PASSWORD), ("wrong", "alice", "wrong"),
                                         ("right", "alice", PASSWORD)):
                seconds, code = timed_status(agent.port, user, password)
                assert code == (200 if kind == "right" else 401), kind
                times[kind].append(seconds)
    finally:
        agent.stop()
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    print("medians (ms):", {k: round(v * 1000, 2) for k, v in medians.items()})
    assert medians["unknown"] >= 0.5 * medians["wrong"], medians
    assert medians["unknown"] <= 2.0 * medians["wrong"], medians
    # A repeated right password is a cache hit, not a bcrypt: much cheaper than a wrong one.
    assert medians["right"] < 0.5 * medians["wrong"], medians


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([lxcwatch_binary(), *args], capture_output=True, text=True, timeout=30, check=False)


MALFORMED = [  # (id, file text with {pki}, exit code, key in the message, message)
    ("not-yaml", "tls_server_config: [cert_file: x\n", 2, "", "not YAML"),
    ("not-a-mapping", "- cert_file\n", 2, "(top level)", "want a mapping"),
    ("unknown-key", "tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n  client_auth: x\n",
     2, "tls_server_config.client_auth", "unknown key"),
    ("unsupported-key", "rate_limit:\n  interval: 1s\n", 2, "rate_limit", "not supported"),
    ("client-auth-type", "tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: RequireClientCert\n  client_ca_file: {pki}/ca.crt\n", 2, "tls_server_config.client_auth_type",
     "invalid value 'RequireClientCert'"),
    ("unverified-client-auth", "tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: RequireAnyClientCert\n", 2, "tls_server_config.client_auth_type", "is not supported"),
    ("missing-cert", "tls_server_config:\n  cert_file: nope.crt\n  key_file: {pki}/server.key\n", 1,
     "tls_server_config.cert_file", "nope.crt: No such file or directory"),
    ("bad-hash", "basic_auth_users:\n  alice: $1$abcdefgh$0123456789abcdef012345\n", 2, "basic_auth_users.alice",
     "not a bcrypt hash"),
    ("cert-key-mismatch", "tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/client.key\n", 2,
     "tls_server_config.key_file", "does not match cert_file"),
    ("ca-not-a-cert", "tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki}/ca.key\n", 2,
     "tls_server_config.client_ca_file", "no PEM certificate"),
    ("min-version", "tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  min_version: TLS10\n", 2, "tls_server_config.min_version", "want TLS12 or TLS13"),
]


@pytest.mark.parametrize("text,code,key,message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_bad_file_is_one_line_and_an_exit_code(pki, tmp_path, text, code, key, message):
    config = write_config(tmp_path, text.format(pki=pki))
    out = run(f"--web.config.file={config}", *tree_args(tmp_path))
    assert out.returncode == code, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"lxcwatch: error: --web.config.file={config}: {key}"), out.stderr
    assert message in out.stderr, out.stderr


def test_a_missing_file_is_a_runtime_error(tmp_path):
    out = run(f"--web.config.file={tmp_path / 'absent.yml'}", *tree_args(tmp_path))
    assert (out.returncode, out.stderr) == (1, f"lxcwatch: error: --web.config.file={tmp_path / 'absent.yml'}: "
                                                "No such file or directory\n")
