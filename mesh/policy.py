"""The mesh's authorization policy: which service may call which method.

Loaded from `mesh/policy.toml` (or a file named by the operator) and checked
once at load time: unknown service names or malformed entries fail the
start-up, not the first request. Decisions are default-deny:

* a method with no entry is refused, whoever calls it;
* the caller's service name (from its certificate) must be listed;
* when the call carries an end user, one of the entry's roles is required,
  and only services listed as assertion issuers may carry end users at all.

Object-level checks (a customer sees only their own accounts) are the
services' business: they know who owns what. This layer only says whether
a caller may reach a method.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.context import EndUser

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.toml")
KNOWN_SERVICES = frozenset({"account", "payment", "risk", "identity", "edge", "operator"})
KNOWN_ROLES = frozenset({"customer", "support", "auditor", "admin", "reviewer"})
ANY_SERVICE = "*"


class PolicyError(ValueError):
    """The policy file is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class MethodRule:
    callers: frozenset[str]
    end_user_roles: frozenset[str]
    require_end_user: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    methods: Mapping[str, MethodRule]
    assertion_issuers: frozenset[str]

    @classmethod
    def load(cls, path: Path = DEFAULT_POLICY_FILE) -> Policy:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"cannot read the policy {path}: {exc}") from exc
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], source: str = "policy") -> Policy:
        if data.get("version") != 1:
            raise PolicyError(f"{source}: version must be 1")
        issuers = frozenset(data.get("end_user_assertions", {}).get("issuers", []))
        _check_names(issuers, KNOWN_SERVICES, f"{source}: end_user_assertions.issuers")
        methods: dict[str, MethodRule] = {}
        for method, entry in data.get("methods", {}).items():
            where = f"{source}: methods.{method!r}"
            if not method.startswith("/") or method.count("/") != 2:
                raise PolicyError(f"{where}: a method is written /package.Service/Method")
            unknown_keys = set(entry) - {"callers", "end_user_roles", "require_end_user"}
            if unknown_keys:
                raise PolicyError(f"{where}: unknown keys {sorted(unknown_keys)}")
            if "callers" not in entry or "end_user_roles" not in entry:
                raise PolicyError(f"{where}: callers and end_user_roles are required")
            callers = frozenset(entry["callers"])
            roles = frozenset(entry["end_user_roles"])
            _check_names(callers, KNOWN_SERVICES | {ANY_SERVICE}, f"{where}.callers")
            _check_names(roles, KNOWN_ROLES, f"{where}.end_user_roles")
            methods[method] = MethodRule(callers, roles, bool(entry.get("require_end_user")))
        return cls(methods, issuers)

    def decide(self, method: str, caller: str, end_user: EndUser | None) -> Decision:
        rule = self.methods.get(method)
        if rule is None:
            return Decision(False, f"{method} has no policy entry (default deny)")
        if ANY_SERVICE not in rule.callers and caller not in rule.callers:
            return Decision(False, f"{caller or 'an unidentified caller'} may not call {method}")
        if end_user is None:
            if rule.require_end_user:
                return Decision(False, f"{method} is only called on behalf of a signed-in user")
            return Decision(True)
        if caller not in self.assertion_issuers:
            return Decision(False, f"{caller} may not act on behalf of end users")
        if not end_user.roles & rule.end_user_roles:
            return Decision(False, f"{method} needs one of the roles {sorted(rule.end_user_roles)}")
        return Decision(True)


def _check_names(names: frozenset[str], known: frozenset[str], where: str) -> None:
    unknown = names - known
    if unknown:
        raise PolicyError(f"{where}: unknown {sorted(unknown)}; known: {sorted(known)}")
