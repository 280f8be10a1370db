"""HTTP basic auth against bcrypt hashes, without telling users apart by timing."""

import base64
import binascii
import hashlib
import threading

import bcrypt

CACHE_SIZE = 1024


class BasicAuth:
    def __init__(self, users: tuple[tuple[str, str], ...]):
        self.users = {name: hashed.encode() for name, hashed in users}
        cost = max(int(hashed[4:6]) for _, hashed in users)
        # An unknown user still costs one bcrypt check of the same cost as a known user's wrong password.
        self._dummy = bcrypt.hashpw(b"lxcwatch: no such user", bcrypt.gensalt(cost))
        self._good: set[bytes] = set()  # sha256 of (user, password, hash) that passed; failures are never kept
        self._lock = threading.Lock()

    def check(self, authorization: str) -> bool:
        """`authorization`: the Authorization header's value ('' when absent)."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
            name = user.decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep or len(password) > 72:  # bcrypt looks at 72 bytes at most; htpasswd refuses longer ones
            return False
        hashed = self.users.get(name)
        key = hashlib.sha256(b"\0".join((user, hashed or b"", password))).digest()
        # A scrape every 15 s would otherwise cost a bcrypt (~60 ms at cost 10) each time.
        if hashed is not None and key in self._good:
            return True
        ok = bcrypt.checkpw(password, hashed or self._dummy) and hashed is not None
        if ok:
            with self._lock:
                if len(self._good) >= CACHE_SIZE:
                    self._good.clear()
                self._good.add(key)
        return ok
