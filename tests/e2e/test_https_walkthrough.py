"""The README's walkthrough, end to end over HTTPS, against a mesh `bankmesh up` would run.

`launch` runs in a child process with the default services (account,
identity, risk, payment and the edge, each its own process) on an embedded
PostgreSQL and Redis of their own under a temporary data directory, so
nothing here touches the shared test servers. The demo customers come from
`mesh.runtime.demo.seed_demo`, the code behind `bankmesh demo`; every call
after that goes through the edge's HTTPS port, trusting only the mesh CA, as
a phone (or curl) would.

`launched_mesh` is shared with the object-level access matrix
(test_bola_matrix.py).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mesh.runtime.demo import DEMO_PASSWORD, Demo, seed_demo, walkthrough
from tests.support.launch import launched

pytestmark = pytest.mark.integration

DRIVER = """
import sys
from pathlib import Path

from mesh.runtime.launcher import DEFAULT_SERVICES, MeshConfig, launch

sys.exit(launch(MeshConfig(data_dir=Path(sys.argv[1]), services=DEFAULT_SERVICES, ready_timeout=60)))
"""


@contextmanager
def launched_mesh(data_dir: Path, *, timeout: float = 120.0) -> Iterator[Path]:
    """`launch` in a child process on embedded engines; yields the data dir once all are up."""
    with launched(DRIVER, data_dir, timeout=timeout):
        yield data_dir


@dataclass
class Https:
    """A client of the edge that trusts only the mesh CA, like the README's curl."""

    demo: Demo

    def client(self) -> httpx.Client:
        trust = ssl.create_default_context(cafile=str(self.demo.ca_file))
        return httpx.Client(base_url=self.demo.edge_url, verify=trust, timeout=30)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with launched_mesh(tmp_path_factory.mktemp("walkthrough")) as directory:
        yield directory


@pytest.fixture(scope="module")
def edge(data_dir: Path) -> Https:
    return Https(seed_demo(data_dir))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: httpx.Client, email: str) -> dict[str, Any]:
    response = client.post("/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()["tokens"]
    return tokens


def available(client: httpx.Client, token: str, account_id: str) -> int:
    response = client.get(f"/v1/accounts/{account_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return int(response.json()["account"]["balances"]["available"]["minorUnits"])


def reason(response: httpx.Response) -> str:
    return str(response.json()["details"][0]["reason"])


def test_demo_seeding_twice_leaves_two_funded_customers_and_changes_nothing(
    data_dir: Path, edge: Https
) -> None:
    """A second `bankmesh demo` finds Alice and Bob with the same ids and registers no one."""
    again = seed_demo(data_dir)
    first = {c.person.key: (c.customer_id, c.account_id) for c in edge.demo.customers}
    assert {c.person.key: (c.customer_id, c.account_id) for c in again.customers} == first
    assert not any(c.registered_now for c in again.customers)
    assert all(c.available_minor_units > 0 for c in again.customers)
    assert again.edge_url.startswith("https://")


def test_sign_in_list_pay_twice_with_one_key_and_read_the_statement(edge: Https) -> None:
    """The money half of the walkthrough: one payment for two requests, on the statement once."""
    alice, bob = edge.demo.customer("alice"), edge.demo.customer("bob")
    with edge.client() as client:
        token = login(client, alice.email)["accessToken"]

        listed = client.get("/v1/accounts", headers=bearer(token))
        assert listed.status_code == 200, listed.text
        assert [a["accountId"] for a in listed.json()["accounts"]] == [alice.account_id]
        assert listed.json()["accounts"][0]["customerId"] == alice.customer_id

        before = available(client, token, alice.account_id)
        key = f"walkthrough-{uuid.uuid4()}"
        body = {
            "sourceAccountId": alice.account_id,
            "destinationAccountId": bob.account_id,
            "amount": {"currencyCode": "EUR", "minorUnits": "2550"},
            "reference": "dinner",
        }
        headers = {**bearer(token), "Idempotency-Key": key}
        paid = client.post("/v1/payments", json=body, headers=headers)
        retried = client.post("/v1/payments", json=body, headers=headers)
        assert paid.status_code == 200, paid.text
        assert retried.status_code == 200, retried.text
        payment = paid.json()["payment"]
        assert payment["status"] == "PAYMENT_STATUS_COMPLETED"
        assert retried.json()["payment"]["paymentId"] == payment["paymentId"]
        assert available(client, token, alice.account_id) == before - 2550

        statement = client.get(f"/v1/accounts/{alice.account_id}/entries", headers=bearer(token))
        assert statement.status_code == 200, statement.text
        entries = statement.json()["entries"]
        ours = [e for e in entries if e["metadata"].get("payment_id") == payment["paymentId"]]
        assert len(ours) == 1
        assert ours[0]["direction"] == "ENTRY_DIRECTION_DEBIT"
        assert ours[0]["postedAmount"] == {"currencyCode": "EUR", "minorUnits": "2550"}
        assert entries[0] == ours[0]  # newest first


def test_a_refresh_token_works_once_and_its_reuse_ends_the_whole_session(edge: Https) -> None:
    """Refresh gives a new pair; the spent token again is refused and revokes the new pair too."""
    bob = edge.demo.customer("bob")
    with edge.client() as client:
        first = login(client, bob.email)
        refreshed = client.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert refreshed.status_code == 200, refreshed.text
        second = refreshed.json()["tokens"]
        assert second["accessToken"] != first["accessToken"]
        assert second["refreshToken"] != first["refreshToken"]
        assert client.get("/v1/me", headers=bearer(second["accessToken"])).status_code == 200

        reused = client.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert reused.status_code == 401, reused.text
        assert reason(reused) == "REFRESH_TOKEN_REUSED"

        after = client.post("/v1/auth/refresh", json={"refreshToken": second["refreshToken"]})
        assert after.status_code == 401, after.text
        refused = client.get("/v1/me", headers=bearer(second["accessToken"]))
        assert refused.status_code == 401, refused.text
        assert reason(refused) == "TOKEN_INVALID"


def test_after_logout_the_access_token_is_refused_at_once(edge: Https) -> None:
    """Logout ends the session: its access token, still unexpired, gets 401 TOKEN_INVALID."""
    alice = edge.demo.customer("alice")
    with edge.client() as client:
        tokens = login(client, alice.email)
        token = tokens["accessToken"]
        assert client.get("/v1/accounts", headers=bearer(token)).status_code == 200
        out = client.post(
            "/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]}, headers=bearer(token)
        )
        assert out.status_code == 200, out.text
        refused = client.get("/v1/accounts", headers=bearer(token))
        assert refused.status_code == 401, refused.text
        assert reason(refused) == "TOKEN_INVALID"
        assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="bankmesh"')


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "jq")),
    reason="the printed commands need bash, curl and jq",
)
def test_the_commands_bankmesh_demo_prints_run_in_bash_as_printed(edge: Https) -> None:
    """The five curl commands, pasted into bash: signed in, paid, listed, signed out, refused."""
    key = f"pasted-{uuid.uuid4()}"
    script = "set -eu\n" + "\n".join(c.shell for c in walkthrough(edge.demo, idempotency_key=key))
    bash = shutil.which("bash")
    assert bash is not None
    ran = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    assert '"tokenType": "Bearer"' in out
    assert '"status": "PAYMENT_STATUS_COMPLETED"' in out
    assert '"entries": [' in out
    assert out.rstrip().endswith("HTTP 401")
    assert " HTTP 200\n" in out
