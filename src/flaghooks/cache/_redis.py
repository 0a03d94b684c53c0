"""RedisFlagStore: one flag cache shared by every host (needs the ``redis`` extra: ``flaghooks[redis]``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from .._models import FeatureState
from ..exceptions import ConfigError, StoreError
from ._codec import decode_state, encode_state
from ._redis_lua import APPLY, RELEASE
from ._rules import Record, load, settle, time_text
from ._store import Entry, FlagStore, HeldClaims, Loaded, target_of, target_text

__all__ = ["RedisFlagStore"]

SCHEMA_VERSION = 1
T = TypeVar("T")


def _redis() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - the extra is installed wherever the tests run
        raise ConfigError("RedisFlagStore needs the redis package: pip install 'flaghooks[redis]'") from None
    return redis


class RedisFlagStore(FlagStore):
    """Flag state in Redis, shared by every receiver on every host.

    ``client_or_url`` is a ``redis.Redis`` client (used as it is configured: give it a short
    ``socket_connect_timeout``) or a URL (``redis://host:6379/0``, ``rediss://...``), for which the store makes a
    client that gives up on a refused connection at once (1 s to connect, 5 s per reply, no retries) so that a
    receiver answers 503 within the sender's timeout. Every key starts with ``prefix``.

    Each event is applied by one Lua script (registered with ``register_script``, so a Redis that lost its script
    cache is handled) on the keys of one environment, which share one hash tag (``{e<environment id>}``):
    cluster-safe. All targets of a feature live in one hash. Claims are keys set with ``NX`` and an expiry
    (``lease`` seconds), so an event is handled once across every host; a handled id is remembered for
    ``handled_for`` seconds. Recent event ids are remembered per feature (the last ``remembered`` events of each).

    Every Redis fault is raised as :class:`StoreError` (one line, host and port, never a password). ``len(cache)``
    and ``cache.states()`` walk the prefix's keys (``SCAN``): for diagnostics, not for a request's path.
    """

    def __init__(
        self,
        client_or_url: Any,
        *,
        prefix: str = "flaghooks:",
        lease: float = 60.0,
        handled_for: int = 86400,
        remembered: int = 4096,
    ) -> None:
        redis = _redis()
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty str, got {prefix!r}")
        for label, number in (("lease", lease), ("handled_for", handled_for), ("remembered", remembered)):
            if isinstance(number, bool) or not isinstance(number, int | float) or not number > 0:
                raise ConfigError(f"{label} must be a positive number, got {number!r}")
        if isinstance(client_or_url, str):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            try:
                self._client = redis.Redis.from_url(
                    client_or_url, socket_connect_timeout=1, socket_timeout=5, retry=Retry(NoBackoff(), 0)
                )
            except ValueError as exc:
                raise ConfigError(f"not a Redis URL: {exc}") from None
            self._owned = True
        elif isinstance(client_or_url, redis.Redis):
            self._client = client_or_url
            self._owned = False
        else:
            raise TypeError(f"client_or_url must be a redis.Redis or a URL, got {type(client_or_url).__name__}")
        self._errors = (redis.RedisError, OSError)
        self._prefix = prefix
        self._lease_ms = int(lease * 1000)
        self._handled_for = int(handled_for)
        self._remembered = int(remembered)
        self._apply = self._client.register_script(APPLY)
        self._release = self._client.register_script(RELEASE)
        self._held = HeldClaims()
        self._checked = False

    def __repr__(self) -> str:
        return f"RedisFlagStore({self._where()}, prefix={self._prefix!r})"

    def _where(self) -> str:
        kwargs = self._client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"redis unix:{kwargs['path']}"
        return f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def _call(self, work: Callable[[], T]) -> T:
        """Run ``work`` against Redis; any Redis fault is a StoreError naming the server."""
        try:
            if not self._checked:
                self._check()
            return work()
        except self._errors as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"flag cache {self._where()}: {text}") from None

    def _check(self) -> None:
        """Refuse a store written by a newer flaghooks (once per store object)."""
        key = self._prefix + "schema"
        self._client.set(key, SCHEMA_VERSION, nx=True)
        version = int(self._client.get(key) or 0)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"flag cache {self._where()} prefix {self._prefix!r} was written by a newer flaghooks (schema "
                f"{version}, this one knows {SCHEMA_VERSION})"
            )
        self._checked = True

    # --- keys ---------------------------------------------------------------------------------------------

    def _keys(self, environment: int, feature: int) -> list[str]:
        base = f"{self._prefix}{{e{environment}}}:"
        return [f"{base}f:{feature}", f"{base}q:{feature}", f"{base}names", f"{base}load"]

    def _features_of(self, environment: int | None) -> Iterator[tuple[int, int, str]]:
        """(environment, feature, key) of every feature hash held (of one environment, or all)."""
        tag = "*" if environment is None else str(environment)
        pattern = f"{_glob(self._prefix)}{{e{tag}}}:f:*"
        for raw in self._client.scan_iter(match=pattern, count=1000):
            key = raw.decode()
            head, _, feature = key.rpartition(":f:")
            env = head[head.rindex("{e") + 2 : -1]
            yield int(env), int(feature), key

    # --- writing ------------------------------------------------------------------------------------------

    def apply(
        self,
        event_id: str,
        when: datetime | None,
        environment: int,
        feature: int,
        name: str,
        identifier: str | None,
        where: Hashable | None,
        new: FeatureState | None,
    ) -> bool:
        args = [
            event_id,
            time_text(when) + event_id,
            feature,
            name,
            target_text(identifier, where),
            "1" if new is None else "0",
            b"" if new is None else encode_state(new),
            self._remembered,
        ]
        keys = self._keys(environment, feature)
        return bool(self._call(lambda: self._apply(keys=keys, args=args)))

    def load(self, environment: int, features: Loaded, when: datetime) -> int:
        ts = time_text(when)
        key = (ts, "")

        def work() -> int:
            changed = 0
            self._note_load(environment, ts, features)
            for _, feature, _ in list(self._features_of(environment)):
                if feature not in features:
                    changed += self._load_feature(environment, feature, None, ts, key)
            for feature, (name, states) in features.items():
                encoded = {where: encode_state(state) for where, state in states.items()}
                changed += self._load_feature(environment, feature, (name, encoded), ts, key)
            return changed

        return self._call(work)

    def _note_load(self, environment: int, ts: str, features: Loaded) -> None:
        """Remember the environment's newest load (its key and features) before loading it, so that a feature
        created meanwhile by an event is deleted as of it (the apply script reads this)."""
        redis = _redis()
        lkey = self._keys(environment, 0)[3]
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(lkey)
                    held = pipe.hget(lkey, "key")
                    if held is not None and held.decode() >= ts:
                        return
                    pipe.multi()
                    pipe.delete(lkey)
                    pipe.hset(lkey, mapping={"key": ts, **{f"f:{feature}": 1 for feature in features}})
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def _load_feature(
        self, environment: int, feature: int, loaded: tuple[str, dict[Any, bytes]] | None, ts: str, key: Any
    ) -> int:
        """Load one feature with the rules of _rules (an optimistic transaction: WATCH, read, MULTI, write)."""
        redis = _redis()
        fkey, _, nkey, lkey = self._keys(environment, feature)
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(fkey, nkey, lkey)
                    held = {field.decode(): value for field, value in pipe.hgetall(fkey).items()}
                    record = _record_of(held, loaded[0] if loaded else "", key)
                    if not held:
                        newest_load, member = pipe.hmget(lkey, ["key", f"f:{feature}"])
                        if newest_load is not None and member is None:
                            settle(record, newest_load.decode(), "", None, None, None)
                    name_owners = old_owners = None
                    if loaded is not None and (not held or key > record.name_key):
                        name_owners = _owners(pipe.hget(nkey, loaded[0]))
                        old_owners = (
                            _owners(pipe.hget(nkey, record.name)) if held and record.name != loaded[0] else None
                        )
                    before = {field: value for field, value in held.items() if field.startswith("t:")}
                    if loaded is None:
                        changed = -settle(record, ts, "", None, None, None)
                    else:
                        changed = load(record, ts, loaded[1])
                    after = _fields_of(record)
                    pipe.multi()
                    gone = [field for field in before if field not in after]
                    if gone:
                        pipe.hdel(fkey, *gone)
                    mapping: dict[str, Any] = {
                        field: value for field, value in after.items() if before.get(field) != value
                    }
                    mapping["newest"] = record.newest[0] + record.newest[1]
                    for field, value in (("tomb", record.tombstone), ("floor", record.floor)):
                        if value is not None:
                            mapping[field] = value[0] + value[1]
                    if name_owners is not None and loaded is not None:
                        name = loaded[0]
                        mapping["name"], mapping["name_key"] = name, ts
                        name_owners[str(feature)] = ts
                        pipe.hset(nkey, name, _join(name_owners))
                        if old_owners is not None:
                            old_owners.pop(str(feature), None)
                            if old_owners:
                                pipe.hset(nkey, record.name, _join(old_owners))
                            else:
                                pipe.hdel(nkey, record.name)
                    pipe.hset(fkey, mapping=mapping)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    # --- claims -------------------------------------------------------------------------------------------

    def claim(self, event_id: str) -> bool | None:
        key = f"{self._prefix}claim:{event_id}"
        token = uuid.uuid4().hex

        def work() -> bool | None:
            if self._client.set(key, token, nx=True, px=self._lease_ms):
                self._held.add(event_id, token)
                return True
            return False if self._client.get(key) == b"done" else None

        return self._call(work)

    def release(self, event_id: str, handled: bool) -> None:
        token = self._held.pop(event_id)
        if token is None:
            return
        key = f"{self._prefix}claim:{event_id}"
        self._call(lambda: self._release(keys=[key], args=[token, "1" if handled else "0", self._handled_for]))

    # --- reading ------------------------------------------------------------------------------------------

    def _feature_id(self, environment: int, feature: str | int) -> int | None:
        if type(feature) is int:
            return feature
        owners = _owners(self._client.hget(self._keys(environment, 0)[2], feature))
        if not owners:
            return None
        return int(max(owners.items(), key=lambda item: (item[1], int(item[0])))[0])

    def find(self, environment: int, feature: str | int, identifier: str | None) -> FeatureState | None:
        def work() -> FeatureState | None:
            found = self._feature_id(environment, feature)
            if found is None:
                return None
            fkey = self._keys(environment, found)[0]
            if identifier is None:
                chosen = self._client.hget(fkey, "t:d")
            else:
                override, default = self._client.hmget(fkey, ["t:i:" + identifier, "t:d"])
                chosen = override if override is not None and not override.endswith(b"\n") else default
            if chosen is None or chosen.endswith(b"\n"):
                return None
            return decode_state(chosen[chosen.index(b"\n") + 1 :])

        return self._call(work)

    def segments(self, environment: int, feature: str | int) -> list[tuple[Hashable, FeatureState]]:
        def work() -> list[tuple[Hashable, FeatureState]]:
            found = self._feature_id(environment, feature)
            if found is None:
                return []
            held = self._client.hgetall(self._keys(environment, found)[0])
            return [(target_of(target)[1], state) for target, state in _states(held) if target.startswith(("s:", "f:"))]

        return self._call(work)

    def entries(self) -> list[Entry]:
        def work() -> list[Entry]:
            found: list[Entry] = []
            for environment, feature, key in self._features_of(None):
                for target, state in _states(self._client.hgetall(key)):
                    found.append((environment, feature, *target_of(target), state))
            return found

        return self._call(work)

    def count(self) -> int:
        def work() -> int:
            return sum(
                1
                for _, _, key in self._features_of(None)
                for field, value in self._client.hgetall(key).items()
                if field.startswith(b"t:") and not value.endswith(b"\n")
            )

        return self._call(work)


def _glob(text: str) -> str:
    """``text`` with the characters SCAN's MATCH treats specially escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _owners(text: bytes | None) -> dict[str, str]:
    """A names-hash value: feature id -> the key of its newest event."""
    if not text:
        return {}
    return dict(line.split(" ", 1) for line in text.decode().split("\n") if line)


def _join(owners: dict[str, str]) -> str:
    return "\n".join(sorted(f"{owner} {key}" for owner, key in owners.items()))


def _states(held: dict[bytes, bytes]) -> Iterator[tuple[str, FeatureState]]:
    for field, value in held.items():
        if field.startswith(b"t:") and not value.endswith(b"\n"):
            yield field[2:].decode(), decode_state(value[value.index(b"\n") + 1 :])


def _split(key: str) -> tuple[str, str]:
    return key[:26], key[26:]


def _record_of(held: dict[str, bytes], name: str, key: tuple[str, str]) -> Record:
    """A feature's hash as a Record (states left encoded), for the Python rules."""
    if not held:
        return Record(name, key)
    text = {field: value.decode() for field, value in held.items() if not field.startswith("t:")}
    record = Record(text["name"], _split(text["name_key"]))
    record.newest = _split(text["newest"])
    record.tombstone = _split(text["tomb"]) if "tomb" in text else None
    record.floor = _split(text["floor"]) if "floor" in text else None
    for field, value in held.items():
        if not field.startswith("t:"):
            continue
        at = value.index(b"\n")
        k, state = _split(value[:at].decode()), value[at + 1 :] or None
        entry = (k[0], k[1], state)
        record.live += state is not None  # what the rules count a deletion's removals from
        rank, where = target_of(field[2:])
        if rank == 0:
            record.default = entry
        elif rank == 1:
            record.segments[where] = entry
        else:
            record.identities[where] = entry  # type: ignore[index]
    return record


def _fields_of(record: Record) -> dict[str, bytes]:
    """A Record's targets as hash fields."""
    fields: dict[str, bytes] = {}
    targets: list[tuple[str, Any]] = []
    if record.default is not None:
        targets.append(("d", record.default))
    targets.extend((target_text(None, where), entry) for where, entry in record.segments.items())
    targets.extend((target_text(who, None), entry) for who, entry in record.identities.items())
    for target, (ts, eid, state) in targets:
        fields["t:" + target] = (ts + eid + "\n").encode() + (state or b"")
    return fields
