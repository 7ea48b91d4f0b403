"""A synthetic, labelled stream of account-to-account payments.

Deterministic: the same `SyntheticConfig` (seed included) yields the same
transactions, ids and labels on every run and machine. Every random draw comes
from `random.Random` streams seeded by strings (hashed with SHA-512 by the
standard library, so PYTHONHASHSEED does not matter), one stream per concern,
so adding a scenario does not reshuffle the normal population.

Normal behaviour. Customers live in European cities, each with one source
account, one or two devices, a handful of usual payees (other customers and
shared business accounts), a typical amount (log-normal; a tenth of them are
"affluent" with amounts in the thousands) and a daily rate. They pay mostly
known payees, sometimes a new one; mostly from their usual device, sometimes
from a new phone; from home, sometimes from another city on a trip; some of
them through the API (a budgeting app, the bank's command line: no position,
sometimes no device id). Honest noise that resembles fraud is there on
purpose, so that the model has to learn what actually separates the two:

* bill-splitting bursts of small payments, and paying several friends in a
  row, some of them for the first time;
* a second (or third) payment to the same payee seconds to two minutes after
  the first: the tip forgotten, the other half, a corrected amount;
* a test euro first: a new customer's first payment, the first payment from
  a new phone;
* occasional large purchases, a VPN that places a customer on another
  continent.

Fraud scenarios (label `scenario`, all `fraud=True`):

| scenario         | what happens                                                         |
|------------------|----------------------------------------------------------------------|
| card_testing     | a stolen credential fires 8-25 tiny payments seconds apart from a new device, then maybe one cash-out |
| account_takeover | a new device, often from far away, sends 1-3 draining transfers to a new payee |
| mule_fan_in      | 8-20 scammed customers each pay one mule account within hours        |
| mule_fan_out     | the mule then forwards most of it to 4-10 fresh accounts in minutes  |
| structuring      | 3-6 transfers just below the reporting threshold within a few days   |
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.risk.domain.model import GeoPoint, Transaction, from_epoch_ms

CITIES: dict[str, tuple[float, float]] = {
    "paris": (48.8566, 2.3522),
    "berlin": (52.5200, 13.4050),
    "madrid": (40.4168, -3.7038),
    "rome": (41.9028, 12.4964),
    "amsterdam": (52.3676, 4.9041),
    "vienna": (48.2082, 16.3738),
    "lisbon": (38.7223, -9.1393),
    "warsaw": (52.2297, 21.0122),
    "dublin": (53.3498, -6.2603),
    "brussels": (50.8503, 4.3517),
    "munich": (48.1351, 11.5820),
    "milan": (45.4642, 9.1900),
}
FAR_CITIES: dict[str, tuple[float, float]] = {
    "lagos": (6.5244, 3.3792),
    "singapore": (1.3521, 103.8198),
    "sao_paulo": (-23.5505, -46.6333),
    "new_york": (40.7128, -74.0060),
    "manila": (14.5995, 120.9842),
}
SCENARIOS = ("card_testing", "account_takeover", "mule_fan_in", "mule_fan_out", "structuring")
LEGIT = "legit"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    seed: int = 7
    customers: int = 1000
    days: int = 42
    start: datetime = datetime(2025, 1, 6, tzinfo=UTC)
    currency: str = "EUR"
    reporting_threshold: float = 10_000.0  # major units
    businesses: int = 150
    # Incidents per 1000 customers over the whole period.
    card_testing: int = 30
    account_takeover: int = 90
    mule_rings: int = 16
    structuring: int = 50
    warmup_days: int = 3  # no fraud before customers have some history


@dataclass(frozen=True, slots=True)
class LabelledTransaction:
    txn: Transaction
    fraud: bool
    scenario: str  # LEGIT or one of SCENARIOS


@dataclass
class _Customer:
    index: int
    customer_id: str
    account: str
    home: tuple[float, float]
    devices: list[str]
    median: float
    rate: float
    payees: list[str]
    affluent: bool
    joined_day: int  # new customers keep arriving: no history is not suspicious by itself
    # Share of payments made through the API (a budgeting app, the bank's command
    # line): a device id at most, never a position. 0 for most customers.
    api: float = 0.0
    api_device: bool = True  # whether their API client sends a device id


@dataclass(order=True)
class _Draft:
    at_ms: int
    seq: int
    customer_id: str = field(compare=False)
    source: str = field(compare=False)
    destination: str = field(compare=False)
    amount: float = field(compare=False)  # major units
    device: str = field(compare=False)
    channel: str = field(compare=False)
    geo: tuple[float, float] | None = field(compare=False)
    scenario: str = field(compare=False)


class _Builder:
    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.start_ms = int(config.start.timestamp() * 1000)
        self.end_ms = self.start_ms + config.days * DAY_MS
        self.drafts: list[_Draft] = []

    def rng(self, purpose: str) -> random.Random:
        # Reproducible simulation, not secrecy: a seeded PRNG is the point.
        return random.Random(f"bankmesh-risk-synthetic:{self.config.seed}:{purpose}")  # noqa: S311

    def add(
        self,
        at_ms: int,
        customer: _Customer | tuple[str, str],
        destination: str,
        amount: float,
        device: str,
        channel: str,
        geo: tuple[float, float] | None,
        scenario: str = LEGIT,
    ) -> None:
        customer_id, source = (
            (customer.customer_id, customer.account)
            if isinstance(customer, _Customer)
            else customer
        )
        self.drafts.append(
            _Draft(
                at_ms,
                len(self.drafts),
                customer_id,
                source,
                destination,
                amount,
                device,
                channel,
                geo,
                scenario,
            )
        )


def generate(config: SyntheticConfig = SyntheticConfig()) -> list[LabelledTransaction]:
    """The whole labelled stream, in time order."""
    b = _Builder(config)
    customers = _population(b)
    _normal_behaviour(b, customers)
    _card_testing(b, customers)
    _account_takeover(b, customers)
    _mule_rings(b, customers)
    _structuring(b, customers)
    drafts = sorted(d for d in b.drafts if b.start_ms <= d.at_ms < b.end_ms)
    return [_finish(config, i, d) for i, d in enumerate(drafts)]


def _finish(config: SyntheticConfig, i: int, d: _Draft) -> LabelledTransaction:
    minor = max(1, round(d.amount * 100))
    txn = Transaction(
        transaction_id=f"syn-{config.seed}-{i:07d}",
        customer_id=d.customer_id,
        source_account_id=d.source,
        destination_account_id=d.destination,
        amount=minor,
        currency=config.currency,
        occurred_at=from_epoch_ms(d.at_ms),
        channel=d.channel,
        device_id=d.device,
        ip_address="",
        geo=None if d.geo is None else GeoPoint(round(d.geo[0], 5), round(d.geo[1], 5)),
    )
    return LabelledTransaction(txn, d.scenario != LEGIT, d.scenario)


def _population(b: _Builder) -> list[_Customer]:
    rng = b.rng("population")
    cities = list(CITIES.values())
    n = b.config.customers
    customers = []
    for i in range(n):
        affluent = rng.random() < 0.1
        median = math.exp(rng.gauss(6.3, 0.6) if affluent else rng.gauss(3.4, 0.7))
        devices = [f"d{i:05d}-0"] + ([f"d{i:05d}-1"] if rng.random() < 0.35 else [])
        customers.append(
            _Customer(
                index=i,
                customer_id=f"c{i:05d}",
                account=f"a{i:05d}",
                home=rng.choice(cities),
                devices=devices,
                median=median,
                rate=min(math.exp(rng.gauss(-0.2, 0.6)), 6.0),
                payees=[],
                affluent=affluent,
                joined_day=rng.randrange(b.config.days) if rng.random() < 0.1 else 0,
            )
        )
    for c in customers:
        friends = rng.sample(range(n), k=min(rng.randint(2, 6), n))
        shops = rng.sample(range(b.config.businesses), k=rng.randint(3, 8))
        c.payees = [customers[f].account for f in friends if f != c.index] + [
            f"b{s:04d}" for s in shops
        ]
    api = b.rng("population:api")  # its own stream: the draws above stay as they were
    for c in customers:
        if api.random() < 0.15:
            c.api = api.uniform(0.3, 1.0)
            c.api_device = api.random() < 0.75
    return customers


def _poisson(rng: random.Random, lam: float) -> int:
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def _jitter(rng: random.Random, place: tuple[float, float], spread: float) -> tuple[float, float]:
    return (place[0] + rng.uniform(-spread, spread), place[1] + rng.uniform(-spread, spread))


def _daytime_ms(rng: random.Random, day_start: int) -> int:
    if rng.random() < 0.05:  # night owls and shift workers: night alone is no signal
        return day_start + rng.randrange(DAY_MS)
    hour = min(max(rng.gauss(14.5, 3.8), 7.0), 23.5)
    return day_start + int(hour * HOUR_MS) + rng.randrange(60_000)


def _amount(rng: random.Random, c: _Customer) -> float:
    amount = c.median * math.exp(rng.gauss(0, 0.55))
    if rng.random() < (0.03 if c.affluent else 0.015):
        amount *= rng.uniform(4, 12)  # a car, a deposit, a holiday
    if rng.random() < 0.2:
        return max(10.0, round(amount, -1))
    return max(1.0, round(amount, 2))


def _normal_behaviour(b: _Builder, customers: list[_Customer]) -> None:
    rng = b.rng("normal")
    everyday = _Everyday(b)
    cities = list(CITIES.values())
    far = list(FAR_CITIES.values())
    n = len(customers)
    for day in range(b.config.days):
        day_start = b.start_ms + day * DAY_MS
        for c in customers:
            if day < c.joined_day:
                continue
            where = rng.choice(cities) if rng.random() < 0.03 else c.home
            if day == c.joined_day and day > 0:  # joined today, after the stream began
                everyday.first_payment(c, day_start, where)
            for _ in range(_poisson(rng, c.rate)):
                at = _daytime_ms(rng, day_start)
                if rng.random() < 0.12:
                    new = (
                        f"b{rng.randrange(b.config.businesses):04d}"
                        if rng.random() < 0.6
                        else customers[rng.randrange(n)].account
                    )
                    if new != c.account and new not in c.payees:
                        c.payees.append(new)
                payee = c.payees[min(int(rng.expovariate(0.45)), len(c.payees) - 1)]
                roll = rng.random()
                new_phone = roll < 0.015  # a new phone, used from now on
                if new_phone:
                    c.devices.append(f"d{c.index:05d}-{len(c.devices)}")
                    device = c.devices[-1]
                elif roll < 0.12 and len(c.devices) > 1:
                    device = c.devices[1]
                else:
                    device = c.devices[0] if len(c.devices) < 3 else c.devices[-1]
                mobile = device.endswith("-0") or rng.random() < 0.5
                channel = "MOBILE" if mobile else "WEB"
                geo: tuple[float, float] | None = None
                if mobile or rng.random() < 0.7:
                    place = rng.choice(far) if rng.random() < 0.003 else where  # VPN
                    geo = _jitter(rng, place, 0.05)
                amount = _amount(rng, c)
                if rng.random() < 0.04:  # coffee, parking, a ticket: tiny, to a business
                    payee = f"b{rng.randrange(b.config.businesses):04d}"
                    amount = round(rng.uniform(0.5, 5.0), 2)
                how = everyday.how(c, device, channel, geo)
                if new_phone:
                    everyday.test_from_new_phone(c, at, how)
                b.add(at, c, payee, amount, *how)
                everyday.repeat(c, at, payee, amount, how)
            if rng.random() < 0.004:  # splitting a bill: small payments to friends, quickly
                at = _daytime_ms(rng, day_start)
                how = everyday.how(c, c.devices[0], "MOBILE", _jitter(rng, where, 0.01))
                for k in range(rng.randint(4, 8)):
                    b.add(
                        at + k * rng.randint(20_000, 90_000),
                        c,
                        c.payees[k % len(c.payees)],
                        round(rng.uniform(8, 45), 2),
                        *how,
                    )
            everyday.friends_in_a_row(c, day_start, where, customers)


_How = tuple[str, str, tuple[float, float] | None]  # device, channel, position


class _Everyday:
    """Legitimate habits that share a surface with fraud, so the model cannot
    learn the surface: quick repeat payments to one payee, paying several
    friends in a row, a test euro first (a new customer, a new phone), and
    payments over the API (no position, sometimes no device).

    Its own random stream, so the draws of the rest of normal behaviour are
    the same with or without it.
    """

    def __init__(self, b: _Builder) -> None:
        self.b = b
        self.rng = b.rng("everyday")

    def how(self, c: _Customer, device: str, channel: str, geo: tuple[float, float] | None) -> _How:
        """The device, channel and position of a payment, with the customer's API habit."""
        if c.api and self.rng.random() < c.api:
            return (device if c.api_device else "", "API", None)
        return (device, channel, geo)

    def _friends(self, c: _Customer) -> list[str]:
        return [p for p in c.payees if p.startswith("a")] or c.payees

    def first_payment(self, c: _Customer, day_start: int, where: tuple[float, float]) -> None:
        """A new customer often starts with a euro to a friend, to see that it arrives."""
        rng = self.rng
        if rng.random() >= 0.5:
            return
        at = _daytime_ms(rng, day_start)
        friend = rng.choice(self._friends(c))
        how = self.how(c, c.devices[0], "MOBILE", _jitter(rng, where, 0.05))
        self.b.add(at, c, friend, rng.choice((1.0, 1.0, 1.0, 0.5, 2.0, 0.1)), *how)
        if rng.random() < 0.7:  # then the real amount, a few minutes later
            later = at + rng.randint(30_000, 15 * 60_000)
            self.b.add(later, c, friend, _amount(rng, c), *how)

    def test_from_new_phone(self, c: _Customer, at: int, how: _How) -> None:
        """The first payment from a new phone is often a small one to someone known."""
        rng = self.rng
        if rng.random() < 0.5:
            before = at - rng.randint(20_000, 20 * 60_000)
            amount = rng.choice((1.0, 1.0, 0.5, 2.0, round(rng.uniform(1.0, 10.0), 2)))
            self.b.add(before, c, rng.choice(c.payees[:3]), amount, *how)

    def repeat(self, c: _Customer, at: int, payee: str, amount: float, how: _How) -> None:
        """One payment to a payee, then another within a minute or two: the second half,
        the tip forgotten, the amount corrected, a second item."""
        rng = self.rng
        if rng.random() >= 0.05:
            return
        for _ in range(1 if rng.random() < 0.8 else 2):
            at += rng.randint(4_000, 120_000)
            again = amount if rng.random() < 0.25 else amount * rng.uniform(0.1, 1.2)
            self.b.add(at, c, payee, max(1.0, round(again, 2)), *how)

    def friends_in_a_row(
        self,
        c: _Customer,
        day_start: int,
        where: tuple[float, float],
        customers: list[_Customer],
    ) -> None:
        """Paying two to six friends one after the other (a shared gift, a trip's costs),
        some of them for the first time."""
        rng = self.rng
        if rng.random() >= 0.012:
            return
        at = _daytime_ms(rng, day_start)
        how = self.how(c, c.devices[0], "MOBILE", _jitter(rng, where, 0.01))
        share = round(rng.uniform(5, 60), 2)
        friends = self._friends(c)
        for _ in range(rng.randint(2, 6)):
            friend = rng.choice(friends)
            if rng.random() < 0.35:  # a friend paid for the first time
                friend = customers[rng.randrange(len(customers))].account
                if friend != c.account and friend not in c.payees:
                    c.payees.append(friend)
            if friend == c.account:
                continue
            amount = share if rng.random() < 0.6 else round(share * rng.uniform(0.5, 1.5), 2)
            self.b.add(at, c, friend, amount, *how)
            at += rng.randint(10_000, 120_000)


def _maybe_round(rng: random.Random, amount: float, unit: int, share: float) -> float:
    """Fraudsters and their victims type round amounts too (EUR 500, 9,500): a round
    amount must not read as honest."""
    if rng.random() < share:
        return float(max(unit, math.floor(amount / unit) * unit))
    return round(amount, 2)


def _incident_times(b: _Builder, purpose: str, per_thousand: int) -> Iterator[tuple[int, int]]:
    """(incident number, start time) for an incident rate scaled to the population."""
    rng = b.rng(f"{purpose}:times")
    count = max(1, round(per_thousand * b.config.customers / 1000))
    first = b.start_ms + b.config.warmup_days * DAY_MS
    for i in range(count):
        yield i, rng.randrange(first, b.end_ms - 12 * HOUR_MS)


def _card_testing(b: _Builder, customers: list[_Customer]) -> None:
    rng = b.rng("card_testing")
    far = list(FAR_CITIES.values())
    for i, at in _incident_times(b, "card_testing", b.config.card_testing):
        victim = rng.choice(customers)
        device = f"ct-{i}"
        api = rng.random() < 0.5
        geo = None if api else _jitter(rng, rng.choice(far), 0.2)
        shops = [f"ct-shop-{i}-{k}" for k in range(rng.randint(1, 3))]
        for k in range(rng.randint(8, 25)):
            at += rng.randint(3_000, 30_000)
            amount = round(rng.uniform(0.5, 3.0), 2)
            b.add(
                at,
                victim,
                shops[k % len(shops)],
                amount,
                device,
                "API" if api else "WEB",
                geo,
                "card_testing",
            )
        if rng.random() < 0.5:
            at += rng.randint(30_000, 300_000)
            b.add(
                at,
                victim,
                f"ct-out-{i}",
                round(rng.uniform(150, 600), 2),
                device,
                "API" if api else "WEB",
                geo,
                "card_testing",
            )


def _account_takeover(b: _Builder, customers: list[_Customer]) -> None:
    rng = b.rng("account_takeover")
    far = list(FAR_CITIES.values())
    near = list(CITIES.values())
    for i, at in _incident_times(b, "account_takeover", b.config.account_takeover):
        victim = rng.choice(customers)
        device = f"ato-{i}"
        # Attackers often proxy through the victim's country to dodge geo checks.
        place = rng.choice(far) if rng.random() < 0.55 else rng.choice(near)
        geo = _jitter(rng, place, 0.1) if rng.random() < 0.85 else None
        mule = f"ato-mule-{i}"
        drain = victim.median * rng.uniform(8, 40)
        parts = rng.randint(1, 3)
        for _ in range(parts):
            at += rng.randint(60_000, 20 * 60_000)
            amount = _maybe_round(rng, drain / parts * rng.uniform(0.8, 1.2), 100, 0.4)
            b.add(at, victim, mule, amount, device, "WEB", geo, "account_takeover")


def _mule_rings(b: _Builder, customers: list[_Customer]) -> None:
    rng = b.rng("mule_rings")
    cities = list(CITIES.values())
    for r, at in _incident_times(b, "mule_rings", b.config.mule_rings):
        mule = (f"mule-c{r}", f"mule-a{r}")
        mule_device = f"mule-d{r}"
        mule_home = rng.choice(cities)
        spread_ms = rng.randint(1, 8) * HOUR_MS
        victims = rng.sample(customers, k=min(rng.randint(8, 20), len(customers)))
        received, last = 0.0, at
        for v in victims:
            t = at + rng.randrange(spread_ms)
            amount = _maybe_round(rng, rng.uniform(100, 900), 10, 0.5)
            received += amount
            last = max(last, t)
            b.add(
                t,
                v,
                mule[1],
                amount,
                v.devices[0],
                "MOBILE",
                _jitter(rng, v.home, 0.05),
                "mule_fan_in",
            )
        t = last + rng.randint(30, 360) * 60_000
        outs = rng.randint(4, 10)
        for k in range(outs):
            t += rng.randint(60_000, 20 * 60_000)
            amount = round(received * rng.uniform(0.85, 0.95) / outs, 2)
            b.add(
                t,
                mule,
                f"cashout-{r}-{k}",
                amount,
                mule_device,
                "MOBILE",
                _jitter(rng, mule_home, 0.05),
                "mule_fan_out",
            )


def _structuring(b: _Builder, customers: list[_Customer]) -> None:
    rng = b.rng("structuring")
    threshold = b.config.reporting_threshold
    affluent = [c for c in customers if c.affluent] or customers
    for _, at in _incident_times(b, "structuring", b.config.structuring):
        c = rng.choice(affluent) if rng.random() < 0.7 else rng.choice(customers)
        targets = [
            rng.choice(c.payees)
            if rng.random() < 0.5
            else f"b{rng.randrange(b.config.businesses):04d}"
            for _ in range(rng.randint(1, 3))
        ]
        for k in range(rng.randint(3, 6)):
            at += rng.randint(2 * HOUR_MS, 20 * HOUR_MS)
            amount = _maybe_round(rng, threshold * rng.uniform(0.9, 0.995), 100, 0.4)
            b.add(
                at,
                c,
                targets[k % len(targets)],
                amount,
                c.devices[0],
                "MOBILE",
                _jitter(rng, c.home, 0.05),
                "structuring",
            )


def time_split(
    stream: list[LabelledTransaction], config: SyntheticConfig, train_fraction: float = 0.7
) -> int:
    """Index of the first transaction of the held-out (later) part of the stream."""
    cut = config.start + timedelta(days=config.days * train_fraction)
    for i, item in enumerate(stream):
        if item.txn.occurred_at >= cut:
            return i
    return len(stream)
