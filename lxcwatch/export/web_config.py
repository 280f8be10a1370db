"""--web.config.file in the exporter-toolkit format: TLS, basic auth users and response headers, validated at start
and read again when the file or a file it names changes."""

import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass, field

import yaml

from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.sources.root import CERT_CAP, CONFIG_CAP, read_bytes

log = logging.getLogger("lxcwatch")

CLIENT_AUTH = {  # exporter-toolkit name -> verify mode
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CIPHERS = {  # Go's names of the TLS 1.2 suites -> OpenSSL's
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
HEADERS = {  # the headers exporter-toolkit allows, and the values it accepts (None: any)
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
# Keys of the format lxcwatch does not implement: refused, never ignored.
UNSUPPORTED = {
    "rate_limit": "rate limiting is not supported",
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported; use client_ca_file",
    "tls_server_config.client_allowed_sans": "not supported",
    "tls_server_config.curve_preferences": "not supported",
}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")


class Invalid(ValueError):
    """A problem with one key of the file."""

    def __init__(self, key: str, message: str, runtime: bool = False):
        self.key, self.runtime = key, runtime
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class TLS:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class WebConfig:
    tls: TLS | None = None
    users: tuple[tuple[str, str], ...] = ()  # (name, bcrypt hash)
    headers: tuple[tuple[str, str], ...] = ()
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)  # built from `tls`


def _mapping(value, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Invalid(key, "want a mapping")
    return value


def _string(value, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(key, "want a non-empty string")
    return value


def _known(section: dict, prefix: str, allowed: set[str]) -> None:
    for name in section:
        key = f"{prefix}{name}"
        if key in UNSUPPORTED:
            raise Invalid(key, UNSUPPORTED[key])
        if name not in allowed:
            raise Invalid(key, "unknown key")


def _tls(section: dict, base: str) -> TLS:
    p = "tls_server_config."
    _known(section, p, {f.name for f in TLS.__dataclass_fields__.values()})

    def path(name: str) -> str:
        return os.path.join(base, _string(section[name], p + name))

    for name in ("cert_file", "key_file"):
        if name not in section:
            raise Invalid(p + name, "missing")
    auth = section.get("client_auth_type", "NoClientCert")
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        raise Invalid(p + "client_auth_type", f"{auth} (a certificate accepted without verification) is not "
                      "supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert")
    if auth not in CLIENT_AUTH:
        raise Invalid(p + "client_auth_type", f"invalid value {auth!r}: want one of {', '.join(CLIENT_AUTH)}")
    ca = path("client_ca_file") if "client_ca_file" in section else None
    if ca and auth == "NoClientCert":
        raise Invalid(p + "client_ca_file", "set, but client_auth_type is NoClientCert")
    if not ca and auth != "NoClientCert":
        raise Invalid(p + "client_ca_file", f"missing: client_auth_type {auth} verifies against it")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        versions[name] = section.get(name, default)
        if versions[name] not in VERSIONS:
            raise Invalid(p + name, f"invalid value {versions[name]!r}: want TLS12 or TLS13")
    if VERSIONS[versions["min_version"]] > VERSIONS[versions["max_version"]]:
        raise Invalid(p + "min_version", "greater than max_version")
    suites = section.get("cipher_suites") or []
    if not isinstance(suites, list) or any(s not in CIPHERS for s in suites):
        bad = [s for s in suites if s not in CIPHERS] if isinstance(suites, list) else suites
        raise Invalid(p + "cipher_suites", f"unsupported {bad!r}: want Go names of TLS 1.2 suites, e.g. "
                      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (TLS 1.3 suites are not configurable)")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise Invalid(p + "prefer_server_cipher_suites", "want true or false")
    return TLS(path("cert_file"), path("key_file"), auth, ca, versions["min_version"], versions["max_version"],
               tuple(suites), prefer)


def _users(section: dict) -> tuple[tuple[str, str], ...]:
    for user, hashed in section.items():
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise Invalid(f"basic_auth_users.{user}", "not a bcrypt hash ($2a$, $2b$ or $2y$, e.g. from htpasswd -nBC 10)")
    return tuple(sorted(section.items()))


def _headers(section: dict) -> tuple[tuple[str, str], ...]:
    p = "http_server_config."
    _known(section, p, {"headers", "http2"})
    if not isinstance(section.get("http2", True), bool):  # lxcwatch speaks HTTP/1.1, which every client falls back to
        raise Invalid(p + "http2", "want true or false")
    headers = []
    for name, value in _mapping(section.get("headers"), p + "headers").items():
        key = f"{p}headers.{name}"
        if name not in HEADERS:
            raise Invalid(key, f"unknown header: want one of {', '.join(HEADERS)}")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise Invalid(key, "want a one-line string")
        if value and HEADERS[name] and value.lower() not in HEADERS[name]:
            raise Invalid(key, f"invalid value {value!r}: want one of {', '.join(HEADERS[name])}")
        if value:
            headers.append((name, value))
    return tuple(headers)


def parse(data, base: str) -> WebConfig:
    """The file's YAML document into a WebConfig (without the SSL context); relative paths are relative to `base`."""
    top = _mapping(data, "(top level)")
    _known(top, "", {"tls_server_config", "http_server_config", "basic_auth_users"})
    tls = _tls(_mapping(top["tls_server_config"], "tls_server_config"), base) if "tls_server_config" in top else None
    return WebConfig(tls, _users(_mapping(top.get("basic_auth_users"), "basic_auth_users")),
                     _headers(_mapping(top.get("http_server_config"), "http_server_config")))


def _no_password() -> bytes:
    return b""  # an encrypted key fails to load instead of prompting on the terminal


def ssl_context(tls: TLS) -> ssl.SSLContext:
    p = "tls_server_config."
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version, ctx.maximum_version = VERSIONS[tls.min_version], VERSIONS[tls.max_version]
    for name in ("cert_file", "key_file") + (("client_ca_file",) if tls.client_ca_file else ()):
        try:
            read_bytes(getattr(tls, name), CERT_CAP)  # a FIFO or /dev/zero here would hang or fill OpenSSL
        except OSError as e:
            raise Invalid(p + name, f"{getattr(tls, name)}: {e.strerror}", runtime=True) from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=tls.cert_file)
    except ssl.SSLError:
        raise Invalid(p + "cert_file", f"{tls.cert_file}: no PEM certificate in it") from None
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise Invalid(p + "key_file", f"{tls.key_file}: does not match cert_file {tls.cert_file}") from None
        raise Invalid(p + "key_file", f"{tls.key_file}: not an unencrypted PEM private key") from None
    ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError:
            raise Invalid(p + "client_ca_file", f"{tls.client_ca_file}: no PEM certificate in it") from None
    if tls.cipher_suites:
        ctx.set_ciphers(":".join(CIPHERS[s] for s in tls.cipher_suites))
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def load(path: str) -> WebConfig:
    """Read, validate and build: every problem is one line naming the file and the key."""
    flag = f"--web.config.file={path}"
    try:
        data = yaml.safe_load(read_bytes(path, CONFIG_CAP).decode("utf-8"))
    except OSError as e:
        raise RuntimeFailure(f"{flag}: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{flag}: not YAML{where}: {what}") from None
    try:
        config = parse(data, os.path.dirname(os.path.abspath(path)))
        context = ssl_context(config.tls) if config.tls else None
    except Invalid as e:
        raise (RuntimeFailure if e.runtime else UsageError)(f"{flag}: {e}") from None
    return WebConfig(config.tls, config.users, config.headers, context)


def _stamp(path: str) -> tuple | None:
    """What changes when a file is rewritten, replaced by a rename or removed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class Watcher:
    """The web config in force: `current()` reads the file again when it, a certificate, the key or the client CA
    changed, as exporter-toolkit reads them for each TLS handshake and each request (a few stat() calls here).
    Every new TLS handshake asks it for its certificate; a change that does not load keeps the config in force,
    logged once, with lxcwatch_web_config_last_reload_successful at 0. TLS turned on or off needs a restart."""

    def __init__(self, path: str, config: WebConfig):
        self.path, self.config, self.loaded = path, config, True
        self._lock = threading.Lock()
        self._stamps = self._stamp_files()
        self.on_change: list = []  # callables given each new config once it is in force
        self._hook(config.context)

    def _names(self) -> tuple:
        tls = self.config.tls
        return (self.path, *((tls.cert_file, tls.key_file, tls.client_ca_file) if tls else ()))

    def _stamp_files(self) -> tuple:
        return tuple(_stamp(name) if name else None for name in self._names())

    def _hook(self, context: ssl.SSLContext | None) -> None:
        if context is not None:
            context.sni_callback = self._handshake  # called for every ClientHello, with or without SNI

    def _handshake(self, sock: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        current = self.current().context
        if current is not None and current is not context:
            sock.context = current  # this handshake already presents the new certificate

    def current(self) -> WebConfig:
        stamps = self._stamp_files()
        if stamps != self._stamps:
            with self._lock:
                if stamps != self._stamps:
                    self._reload(stamps)
        return self.config

    def _reload(self, stamps: tuple) -> None:
        self._stamps = stamps  # a failed load is logged once, not at each request, until a file changes again
        try:
            new = load(self.path)
            if (new.tls is None) != (self.config.tls is None):
                raise UsageError(f"--web.config.file={self.path}: TLS turned {'off' if new.tls is None else 'on'}; "
                                 "restart needed to apply it")
        except (UsageError, RuntimeFailure) as e:
            self.loaded = False
            log.error("web config not reloaded, keeping the one in force", extra={"err": str(e)})
            return
        self._hook(new.context)
        names = self._names()
        self.config, self.loaded = new, True
        if self._names() != names:  # other files now: watch those (the stamps taken before loading are safe:
            self._stamps = self._stamp_files()  # a change while loading makes one more reload, not a missed one)
        for call in self.on_change:
            call(new)
        log.info("web config reloaded", extra={"path": self.path, "tls": new.tls is not None,
                                               "users": len(new.users)})
