"""The lab's alert observer fails the test when it could not read Prometheus' alerts, instead of reporting "not
seen" (a blind observer would make every "this alert never fired" assertion pass)."""

import pytest

from tests.support import lab
from tests.support.agent import wait_until


class Unreachable:
    """A Prometheus address on loopback where nobody listens: every poll is a refused connection."""

    url = f"http://127.0.0.1:{lab.free_port()}"

    def alerts(self) -> list[dict]:
        return lab.get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]


def test_a_blind_observer_fails_instead_of_seeing_nothing():
    observer = lab.Observer(Unreachable())
    try:
        wait_until(lambda: observer.blind, f"a gap of more than {lab.Observer.BLIND} s reported", timeout=10)
        with pytest.raises(AssertionError, match="could not observe.*Connection refused|could not observe.*URLError"):
            observer.matching(alertname="LxcwatchReplicasNapiHeavy")
    finally:
        observer.close()
