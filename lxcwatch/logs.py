"""Log output in logfmt or JSON, the formats Prometheus exporters use (--log.format), or to the journal."""

import json
import logging
import os
import re
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\n\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}  # syslog levels


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """The journal entry of a record: MESSAGE, PRIORITY, and each field of the record as an upper-case
    journal field (device=eth0 -> DEVICE=eth0), so `journalctl DEVICE=eth0` finds it."""
    fields = {"MESSAGE": record.getMessage(), "PRIORITY": str(_PRIORITY.get(record.levelname, 6)),
              "SYSLOG_IDENTIFIER": "lxcwatch", "LOGGER": record.name}
    for key, value in _fields(record).items():
        if key not in ("ts", "level", "logger", "msg"):
            name = re.sub(r"[^A-Z0-9_]", "_", key.upper()).lstrip("_")
            fields[name if name and not name[0].isdigit() else f"F_{name}"] = str(value)
    return fields


class JournalHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        from systemd import journal  # only when logging to the journal

        try:
            journal.send(**journal_fields(record))
        except Exception:  # noqa: BLE001  (logging must never take the agent down)
            self.handleError(record)


def stderr_is_journal(env: dict[str, str] | None = None) -> bool:
    """systemd sets JOURNAL_STREAM=DEVICE:INODE when stderr is connected to the journal."""
    stream = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup(level: str, fmt: str) -> None:
    """Log to the journal natively when systemd connected stderr to it, else to stderr in `fmt`."""
    if stderr_is_journal():
        handler: logging.Handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
