"""Reads kernel messages from the journal, /dev/kmsg and pstore, and counts their signatures (lxcwatch/kernel/kmsg.py)."""

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator

from lxcwatch.kernel.kmsg import count, kmsg_message, match

log = logging.getLogger("lxcwatch.klog")


def pstore_lines(directory: str) -> Iterator[str]:
    """Lines of every dmesg file pstore kept (ramoops, efi, erst); compressed ones (*.enc.z) are skipped."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        if name.endswith(".enc.z"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                yield from f.read().splitlines()
        except OSError as e:
            log.warning("cannot read a pstore file", extra={"path": os.path.join(directory, name), "err": e.strerror})


def journal_available(path: str | None) -> bool:
    """A journal directory given, or the system's persistent or volatile journal present."""
    if path is not None:
        return os.path.isdir(path)
    return any(os.path.isdir(d) and os.listdir(d) for d in ("/var/log/journal", "/run/log/journal"))


def _reader(path: str | None):
    from systemd import journal  # systemd-python: only where the journal is used

    return journal.Reader(path=path) if path else journal.Reader()


def previous_boot(path: str | None, current: str) -> str | None:
    """The boot before `current`: the boot of the entry just before the current boot's first one (or of the
    journal's last entry when the current boot wrote nothing there)."""
    reader = _reader(path)
    try:
        reader.add_match(_BOOT_ID=current.replace("-", ""))
        reader.seek_head()
        first = reader.get_next()
        reader.flush_matches()
        if first:
            reader.seek_cursor(first["__CURSOR"])
            reader.get_next()
            entry = reader.get_previous()
        else:
            reader.seek_tail()
            entry = reader.get_previous()
        boot = entry.get("_BOOT_ID") if entry else None
        return str(boot) if boot else None
    finally:
        reader.close()


def journal_entries(path: str | None, boot: str) -> Iterator[tuple[float, str]]:
    """(wall time, message) of a boot's kernel messages."""
    reader = _reader(path)
    try:
        reader.add_match(_BOOT_ID=boot.replace("-", ""), _TRANSPORT="kernel")
        for entry in reader:
            message = entry.get("MESSAGE")
            if isinstance(message, bytes):
                message = message.decode(errors="replace")
            if message:
                yield entry["__REALTIME_TIMESTAMP"].timestamp(), message
    finally:
        reader.close()


def journal_messages(path: str | None, boot: str) -> Iterator[str]:
    return (message for _, message in journal_entries(path, boot))


class Watch:
    """Counts signatures in the current boot's kernel messages on its own thread: the journal if there is one,
    else /dev/kmsg, else nothing ("none" in the metrics, logged)."""

    def __init__(self, boot: str, journal_path: str | None, kmsg_path: str | None, use_journal: bool):
        self.boot = boot
        self.counts: Counter = Counter()
        self.source = "none"
        self._stop = threading.Event()
        if use_journal and journal_available(journal_path):
            self.source, target = "journal", lambda: self._follow_journal(journal_path)
        elif kmsg_path and os.access(kmsg_path, os.R_OK):
            if use_journal:
                log.warning("journal unavailable: kernel events from /dev/kmsg", extra={"path": kmsg_path})
            self.source, target = "kmsg", lambda: self._follow_kmsg(kmsg_path)
        else:
            if use_journal or kmsg_path:
                log.warning("journal and kmsg unavailable: kernel events are not counted")
            return
        threading.Thread(target=self._guard, args=(target,), name="klog", daemon=True).start()

    def _guard(self, target) -> None:
        try:
            target()
        except Exception as e:
            log.error("kernel log reader stopped", extra={"source": self.source, "err": f"{type(e).__name__}: {e}"})
            self.source = "none"

    def _add(self, message: str) -> None:
        hit = match(message)
        if hit:
            self.counts[hit] += 1  # one writer thread; a scrape copies the Counter

    def _follow_journal(self, path: str | None) -> None:
        from systemd import journal

        reader = _reader(path)
        reader.add_match(_BOOT_ID=self.boot.replace("-", ""), _TRANSPORT="kernel")
        while not self._stop.is_set():
            for entry in reader:
                message = entry.get("MESSAGE")
                if isinstance(message, bytes):
                    message = message.decode(errors="replace")
                if message:
                    self._add(message)
            if reader.wait(1_000_000) == journal.INVALIDATE:  # files rotated: the iterator picks them up
                continue

    def _follow_kmsg(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while not self._stop.is_set():
                try:
                    record = os.read(fd, 8192).decode(errors="replace")
                except BrokenPipeError:  # EPIPE: records were overwritten before we read them
                    continue
                if not record:
                    break
                message = kmsg_message(record.rstrip("\n"))
                if message:
                    self._add(message)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()


def scan_previous_boot(boot: str, journal_path: str | None, use_journal: bool, pstore: str | None
                       ) -> tuple[str | None, Counter]:
    """The previous boot's id (None if unknown) and the signatures in its journal and in pstore."""
    counts: Counter = Counter()
    previous = None
    if use_journal and journal_available(journal_path):
        try:
            previous = previous_boot(journal_path, boot)
            if previous:
                counts.update(count(journal_messages(journal_path, previous)))
        except Exception as e:  # a damaged journal file must not stop the agent
            log.warning("cannot read the previous boot's journal", extra={"err": f"{type(e).__name__}: {e}"})
    if pstore:
        counts.update(count(pstore_lines(pstore)))
    return previous, counts
