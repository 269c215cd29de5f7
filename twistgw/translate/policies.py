"""TrafficPolicies and SecurityPolicies (GEP-713 direct attachment): what each targets,
what its sections compile to, which routes each section reaches, and each policy's
status per ancestor.

Precedence: for every route rule, each section (rateLimit, compression; ipAccess,
basicAuth) comes from the most specific target with a policy that sets it: the rule
(by name), the route, the listener (by name, a Gateway's own listeners), the Gateway.
Two policies of one kind on the same target: the older wins, the other is Conflicted
there. A SecurityPolicy that cannot be used (a missing Secret) makes the routes it
would protect answer 500 rather than go unprotected; a TrafficPolicy that cannot be
used is left out."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

import attrs
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from twistgw.api.fields import parse_duration
from twistgw.api.policy_validation import RATE_UNITS
from twistgw.api.resource import GATEWAY_GROUP, ObjectKey, ObjectStatus, Resource
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import Attachment
from twistgw.translate.backendtls import MAX_ANCESTORS
from twistgw.translate.certificates import secret_value
from twistgw.translate.conditions import condition
from twistgw.translate.gateways import GatewayState
from twistgw.translate.references import BackendError, resolve_service

#: The sections of each policy kind, in the order they are reported.
SECTIONS = {
    "TrafficPolicy": ("rateLimit", "compression", "healthCheck"),
    "SecurityPolicy": ("ipAccess", "basicAuth", "jwt", "extAuth"),
}
#: (kind, namespace, name, sectionName or None)
Target = tuple[str, str, str, str | None]
#: The key of a basic-auth Secret that holds the htpasswd file.
HTPASSWD_KEY = ".htpasswd"
#: The key of a JWT provider's Secret that holds its JSON Web Key Set.
JWKS_KEY = "jwks"
#: Users one htpasswd Secret may list.
MAX_USERS = 10000
#: Hash prefixes twistgw verifies: bcrypt's, and base64 SHA-1's.
HASH_PREFIXES = ("$2a$", "$2b$", "$2y$", "{SHA}")
#: How bad each outcome is, for an ancestor several targets lead to (the worst shows).
SEVERITY = {"Accepted": 0, "TargetNotFound": 1, "Conflicted": 2, "Invalid": 3}


class Unusable(Exception):
    """A policy section that validates but cannot be used; the message says why."""


@attrs.define
class PolicyState:
    resource: Resource
    sections: dict[str, Any] = attrs.field(factory=dict)  # compiled, by section name
    problem: str | None = None  # why it cannot be used at all (Invalid)
    #: each target's outcome: (reason, message); reason "Accepted" when it applies
    outcomes: dict[Target, tuple[str, str]] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return _qualified(self.resource)

    def settle(self, target: Target, reason: str, message: str) -> None:
        """Record what became of ``target``."""
        self.outcomes[target] = (reason, message)


def _htpasswd(snapshot: Snapshot, policy: Resource, spec: dict) -> ir.BasicAuth:
    name = spec["secretRef"]["name"]
    secret = snapshot.get("Secret", policy.namespace, name)
    where = f"Secret {policy.namespace}/{name}"
    if secret is None:
        raise Unusable(f"basicAuth: {where} does not exist")
    text = _secret_text(secret, HTPASSWD_KEY, "basicAuth")
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user or not hashed.startswith(HASH_PREFIXES):
            raise Unusable(
                f"basicAuth: {where} {HTPASSWD_KEY} line {number} is not user:hash with a "
                "bcrypt ($2y$) or {SHA} hash"
            )
        users.setdefault(user, hashed)
        if len(users) > MAX_USERS:
            raise Unusable(f"basicAuth: {where} lists more than {MAX_USERS} users")
    if not users:
        raise Unusable(f"basicAuth: {where} {HTPASSWD_KEY} lists no users")
    realm = spec.get("realm") or "twistgw"
    return ir.BasicAuth(_qualified(policy), realm, tuple(sorted(users.items())))


def _jwt_provider(snapshot: Snapshot, policy: Resource, spec: dict) -> ir.JWTProvider:
    """A JWT provider, its JWKS read from its Secret (checked: a key set that parses)."""
    jwks = spec["jwks"]
    text = ""
    if "secretRef" in jwks:
        name = jwks["secretRef"]["name"]
        where = f"jwt provider {spec['name']}: Secret {policy.namespace}/{name}"
        secret = snapshot.get("Secret", policy.namespace, name)
        if secret is None:
            raise Unusable(f"{where} does not exist")
        text = _secret_text(secret, JWKS_KEY, f"jwt provider {spec['name']}")
        try:
            KeySet.import_key_set(json.loads(text))
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            raise Unusable(f"{where} {JWKS_KEY} is not a JSON Web Key Set: {exc}") from exc
    return ir.JWTProvider(
        spec["name"],
        spec.get("issuer"),
        tuple(spec.get("audiences") or ()),
        text,
        jwks.get("uri"),
        tuple((p["claim"], p["header"].lower()) for p in spec.get("claimToHeaders") or ()),
    )


def _health_check(policy: str, spec: dict) -> ir.HealthCheck:
    active = passive = None
    if "active" in spec:
        a = spec["active"]
        active = ir.ActiveCheck(
            a["path"],
            parse_duration(a["interval"]),
            parse_duration(a["timeout"]),
            a["healthyThreshold"],
            a["unhealthyThreshold"],
            tuple(sorted(set(a["expectedStatuses"]))),
        )
    if "passive" in spec:
        p = spec["passive"]
        passive = ir.PassiveCheck(
            p["consecutiveErrors"], parse_duration(p["ejectionTime"]), p["maxEjectionPercent"]
        )
    return ir.HealthCheck(policy, active, passive)


def _ext_auth(snapshot: Snapshot, policy: Resource, spec: dict) -> ir.ExtAuth:
    """An extAuth section, its auth service resolved to endpoints."""
    http = spec["http"]
    ref = http["backendRef"]
    try:
        endpoints, _ = resolve_service(snapshot, policy, ref)
    except BackendError as exc:
        raise Unusable(f"extAuth: {exc.message}") from exc
    namespace = ref.get("namespace") or policy.namespace
    backend = ir.Backend(f"{namespace}/{ref['name']}:{ref['port']}", 1, endpoints)
    return ir.ExtAuth(
        _qualified(policy),
        backend,
        http["path"],
        tuple(name.lower() for name in http.get("headersToBackend") or ()),
        tuple(name.lower() for name in http.get("headersFromAuth") or ()),
        parse_duration(spec["timeout"]),
        spec["failOpen"],
    )


def _secret_text(secret: Resource, key: str, where: str) -> str:
    """A Secret's ``key`` as UTF-8 text (``where``: the section, for the message)."""
    try:
        return secret_value(secret, key).decode("utf-8")
    except ValueError as exc:  # (UnicodeDecodeError too)
        raise Unusable(f"{where}: {exc}") from exc


def _compile(snapshot: Snapshot, state: PolicyState) -> None:
    """Compile the policy's sections into ``state`` (the rate limit's bucket is per
    target: see ``rate_limit``); set ``problem`` if it cannot be used."""
    policy = state.resource
    spec = policy.spec
    try:
        if "compression" in spec:
            c = spec["compression"]
            state.sections["compression"] = ir.Compression(
                state.name,
                tuple(c["types"]),
                c["minSize"],
                tuple(media.lower() for media in c["contentTypes"]),
            )
        if "rateLimit" in spec:
            state.sections["rateLimit"] = spec["rateLimit"]
        if "healthCheck" in spec:
            state.sections["healthCheck"] = _health_check(state.name, spec["healthCheck"])
        if "ipAccess" in spec:
            lists = spec["ipAccess"]
            state.sections["ipAccess"] = ir.IPAccess(
                state.name,
                tuple(str(ipaddress.ip_network(n, strict=False)) for n in lists.get("allow", ())),
                tuple(str(ipaddress.ip_network(n, strict=False)) for n in lists.get("deny", ())),
            )
        if "basicAuth" in spec:
            state.sections["basicAuth"] = _htpasswd(snapshot, policy, spec["basicAuth"])
        if "jwt" in spec:
            providers = tuple(_jwt_provider(snapshot, policy, p) for p in spec["jwt"]["providers"])
            state.sections["jwt"] = ir.JWTAuth(state.name, providers)
        if "extAuth" in spec:
            state.sections["extAuth"] = _ext_auth(snapshot, policy, spec["extAuth"])
    except Unusable as exc:
        state.problem = str(exc)
    if not state.sections and state.problem is None:
        state.problem = f"the policy sets none of {', '.join(SECTIONS[policy.kind])}"


def rate_limit(state: PolicyState, target: Target) -> ir.RateLimit:
    """The policy's rate limit, counted for ``target`` (every route under it shares)."""
    spec = state.sections["rateLimit"]
    kind, namespace, name, section = target
    bucket = f"{state.name} {kind} {namespace}/{name}" + (f"/{section}" if section else "")
    key = spec["key"]
    return ir.RateLimit(
        state.name,
        bucket,
        spec["requests"],
        RATE_UNITS[spec["unit"]],
        spec["burst"],
        key["type"],
        key["header"].lower() if key.get("header") else None,
    )


def _section_of(route_spec: dict, name: str) -> bool:
    return any(rule.get("name") == name for rule in route_spec.get("rules") or [])


class PolicyAttachment:
    """Every TrafficPolicy and SecurityPolicy, checked against the Gateways and routes
    this controller serves; ``apply`` puts them on the routing table's routes."""

    def __init__(
        self,
        snapshot: Snapshot,
        gateways: dict[tuple[str, str], GatewayState],
        attachments: list[Attachment],
    ) -> None:
        self.states: list[PolicyState] = []
        #: the Gateways each route target is attached to, to report as its ancestors
        self.route_parents: dict[tuple[str, str, str], set[ObjectKey]] = {}
        for attachment in attachments:
            route = attachment.route
            key = (route.kind, route.namespace, route.name)
            self.route_parents.setdefault(key, set()).add(attachment.listener.gateway.key)
        #: (policy kind, target) -> the policy that holds it
        self.winners: dict[tuple[str, Target], PolicyState] = {}
        for kind in SECTIONS:
            for policy in sorted(snapshot.of_kind(kind), key=Resource.age_key):
                self._take(snapshot, gateways, PolicyState(policy))

    def _take(
        self,
        snapshot: Snapshot,
        gateways: dict[tuple[str, str], GatewayState],
        state: PolicyState,
    ) -> None:
        policy = state.resource
        _compile(snapshot, state)
        self.states.append(state)
        for ref in policy.spec["targetRefs"]:
            target = (ref["kind"], policy.namespace, ref["name"], ref.get("sectionName"))
            found = self._target_problem(snapshot, gateways, target)
            if found is None:
                continue  # another controller's Gateway: not ours to report on
            if found:
                state.settle(target, "TargetNotFound", found)
                continue
            holder = self.winners.get((policy.kind, target))
            if holder is not None:
                message = f"{policy.kind} {holder.name} (older) already targets {_shown(target)}"
                state.settle(target, "Conflicted", message)
                continue
            self.winners[(policy.kind, target)] = state
            if state.problem is not None:
                state.settle(target, "Invalid", state.problem)
            else:
                state.settle(target, "Accepted", "Policy is accepted")

    @staticmethod
    def _target_problem(
        snapshot: Snapshot, gateways: dict[tuple[str, str], GatewayState], target: Target
    ) -> str | None:
        """Why ``target`` is not there ("" if it is; None: a Gateway of another
        controller's)."""
        kind, namespace, name, section = target
        found = snapshot.get(kind, namespace, name)
        if found is None:
            return f"{kind} {namespace}/{name} does not exist"
        if kind == "Gateway":
            gateway = gateways.get((namespace, name))
            if gateway is None:
                return None
            if section is not None and not any(li.name == section for li in gateway.listeners):
                return f"Gateway {namespace}/{name} has no listener {section}"
        elif section is not None and not _section_of(found.spec, section):
            return f"{kind} {namespace}/{name} has no rule named {section}"
        return ""

    def apply(self, attachments: list[Attachment]) -> list[Attachment]:
        """``attachments`` with each compiled rule carrying the policies that reach it."""
        if not self.winners:
            return attachments
        made: dict[tuple, ir.Policies | None] = {}
        evolved: dict[tuple[int, int], ir.Route] = {}
        out = []
        for attachment in attachments:
            levels = _levels(attachment)
            rules = []
            for match_index, compiled in attachment.rules:
                if not isinstance(compiled, ir.Route):
                    rules.append((match_index, compiled))
                    continue
                chain = levels
                if compiled.rule_name is not None:
                    kind, namespace, name, _ = levels[0]
                    chain = ((kind, namespace, name, compiled.rule_name), *levels)
                if chain not in made:
                    made[chain] = self._policies(chain)
                policies = made[chain]
                if policies is not None:
                    memo = (id(compiled), id(policies))
                    if memo not in evolved:
                        evolved[memo] = attrs.evolve(compiled, policies=policies)
                    compiled = evolved[memo]
                rules.append((match_index, compiled))
            out.append(attrs.evolve(attachment, rules=tuple(rules)))
        return out

    def _policies(self, chain: Iterable[Target]) -> ir.Policies | None:
        """The sections reaching a rule whose targets, most specific first, are
        ``chain``."""
        chosen: dict[str, Any] = {}
        refused = None
        for target in chain:
            for kind, sections in SECTIONS.items():
                state = self.winners.get((kind, target))
                if state is None:
                    continue
                if state.problem is not None:
                    if kind == "SecurityPolicy" and refused is None:
                        refused = f"SecurityPolicy {state.name} cannot be used: {state.problem}"
                    continue
                for section in sections:
                    if section in state.sections and section not in chosen:
                        value = state.sections[section]
                        if section == "rateLimit":
                            value = rate_limit(state, target)
                        chosen[section] = value
        if not chosen and refused is None:
            return None
        return ir.Policies(
            rate_limit=chosen.get("rateLimit"),
            compression=chosen.get("compression"),
            health_check=chosen.get("healthCheck"),
            ip_access=chosen.get("ipAccess"),
            basic_auth=chosen.get("basicAuth"),
            jwt=chosen.get("jwt"),
            ext_auth=chosen.get("extAuth"),
            refused=refused,
        )

    def statuses(self, controller_name: str) -> list[ObjectStatus]:
        """Each policy's status: an ancestor per Gateway a target of it belongs to (a
        target not found is its own ancestor), with the worst outcome among them."""
        statuses = []
        for state in self.states:
            by_ancestor: dict[tuple, tuple[str, str]] = {}
            for target, outcome in state.outcomes.items():
                for ancestor in self._ancestors(target, outcome[0]):
                    known = by_ancestor.get(ancestor)
                    if known is None or SEVERITY[outcome[0]] > SEVERITY[known[0]]:
                        by_ancestor[ancestor] = outcome
            policy = state.resource
            ancestors = []
            for ancestor in sorted(by_ancestor, key=lambda a: tuple(x or "" for x in a))[
                :MAX_ANCESTORS
            ]:
                reason, message = by_ancestor[ancestor]
                kind, namespace, name, section = ancestor
                ref = {"group": GATEWAY_GROUP, "kind": kind, "namespace": namespace, "name": name}
                if section is not None:
                    ref["sectionName"] = section
                accepted = condition(
                    "Accepted", reason == "Accepted", reason, message, policy.generation
                )
                entry = {"ancestorRef": ref, "controllerName": controller_name}
                ancestors.append({**entry, "conditions": [accepted]})
            statuses.append(
                ObjectStatus(
                    policy.key, policy.api_version, policy.generation, {"ancestors": ancestors}
                )
            )
        return statuses

    def _ancestors(self, target: Target, reason: str) -> list[Target]:
        kind, namespace, name, _ = target
        if reason == "TargetNotFound":
            return [target]
        if kind == "Gateway":
            return [("Gateway", namespace, name, None)]
        parents = self.route_parents.get((kind, namespace, name), ())
        return [("Gateway", key.namespace, key.name, None) for key in parents]


def _levels(attachment: Attachment) -> tuple[Target, ...]:
    """The targets a rule of ``attachment`` falls under, most specific first: its route,
    its listener (a Gateway's own), its Gateway."""
    route = attachment.route
    listener = attachment.listener
    gateway = listener.gateway.key
    levels: list[Target] = [(route.kind, route.namespace, route.name, None)]
    if listener.owner is None:
        levels.append(("Gateway", gateway.namespace, gateway.name, listener.name))
    levels.append(("Gateway", gateway.namespace, gateway.name, None))
    return tuple(levels)


def _qualified(policy: Resource) -> str:
    """``namespace/name``, as the routing table names a policy."""
    return f"{policy.namespace}/{policy.name}"


def _shown(target: Target) -> str:
    kind, namespace, name, section = target
    return f"{kind} {namespace}/{name}" + (f" section {section}" if section else "")
