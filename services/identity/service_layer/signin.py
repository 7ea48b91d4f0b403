"""Signing in, refreshing and signing out: the session use cases.

Sign-in (`login`) answers an unknown email and a wrong password alike: the
same error, the same message, and the same work (a dummy argon2id
verification for an email nobody has), so neither the answer nor its timing
tells an attacker who has an account. Failures are counted per email (known
or not, by blind index); the fifth in a row locks sign-in for that email for
15 minutes (ACCOUNT_LOCKED, even with the right password).

`refresh` rotates: under a lock on the session row, the presented token is
spent and a new one issued, so of two refreshes racing with one token exactly
one wins. A spent token presented again ends the session (see
domain/sessions.py), writes a security event, and tells resource servers to
stop honouring the session's access tokens.

`logout` ends the session in the database, then publishes its id to the
revocation list (Redis). If Redis is down the call fails with UNAVAILABLE;
the session is already ended, and a retry publishes it again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.identity.domain.errors import (
    AccountLocked,
    InvalidCredentials,
    InvalidRequest,
    RefreshTokenReused,
    TokenExpired,
    TokenInvalid,
)
from services.identity.domain.events import EventKind, Outcome, SecurityEvent
from services.identity.domain.model import FailedSignIns, Lockout, User, canonical_email
from services.identity.domain.sessions import (
    EndReason,
    RefreshToken,
    Session,
    Verdict,
    hash_refresh_token,
    judge,
    new_refresh_token,
    plausible_refresh_token,
)

from .ports import (
    AccessTokenIssuer,
    Clock,
    DependencyUnavailable,
    PasswordHasher,
    PersonalDataVault,
    RequestInfo,
    SessionRevocations,
    TokenSubject,
)
from .unit_of_work import UnitOfWorkFactory

log = logging.getLogger("bankmesh.identity")

DEFAULT_SESSION_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SessionSettings:
    session_seconds: int = DEFAULT_SESSION_SECONDS
    lockout: Lockout = field(default_factory=Lockout)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str = field(repr=False)
    refresh_expires_in: int
    session_id: uuid.UUID


class Authentication:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        passwords: PasswordHasher,
        tokens: AccessTokenIssuer,
        vault: PersonalDataVault,
        revocations: SessionRevocations,
        clock: Clock,
        settings: SessionSettings | None = None,
    ) -> None:
        self._uow = uow
        self._passwords = passwords
        self._tokens = tokens
        self._vault = vault
        self._revocations = revocations
        self._clock = clock
        self._settings = settings or SessionSettings()

    # -- sign-in ----------------------------------------------------------------------

    async def login(self, email: str, password: str, request: RequestInfo) -> TokenPair:
        if not email.strip():
            raise InvalidRequest("email is required", field="email")
        if not password:
            raise InvalidRequest("password is required", field="password")
        # A malformed email is simply one nobody signs in with.
        email_index = self._vault.email_index(canonical_email(email))
        now = self._clock.now()
        async with self._uow() as uow:
            failures = await uow.identity.failed_sign_ins(email_index)
            user = await uow.identity.user_by_email_index(email_index)
        if failures.locked(now):
            await self._record(
                self._sign_in_event(Outcome.DENIED, now, user, email_index, request, "locked")
            )
            raise AccountLocked(failures.retry_after(now))

        if user is None:
            await self._passwords.verify_dummy(password)
            verified = False
        else:
            verified = await self._passwords.verify(user.password_hash, password)
        if user is None or not verified:
            await self._count_failure(email_index, user, now, request)
            raise InvalidCredentials()

        rehashed = (
            await self._passwords.hash(password)
            if self._passwords.needs_rehash(user.password_hash)
            else None
        )
        session = Session(
            uuid.uuid4(), user.id, now, now + timedelta(seconds=self._settings.session_seconds)
        )
        refresh_token, refresh_hash = new_refresh_token()
        async with self._uow() as uow:
            # Someone may have locked the email while we were verifying.
            failures = await uow.identity.lock_failed_sign_ins(email_index)
            if failures.locked(now):
                raise AccountLocked(failures.retry_after(now))
            await uow.identity.save_failed_sign_ins(email_index, FailedSignIns(), now)
            if rehashed is not None:
                await uow.identity.set_password_hash(user.id, rehashed, now)
            await uow.identity.add_session(session, request.client_ip)
            await uow.identity.add_refresh_token(
                RefreshToken(uuid.uuid4(), session.id, refresh_hash, now)
            )
            await uow.identity.record(
                SecurityEvent(
                    EventKind.SIGN_IN,
                    Outcome.SUCCESS,
                    now,
                    actor=str(user.id),
                    user_id=user.id,
                    session_id=session.id,
                    client_ip=request.client_ip,
                    request_id=request.request_id,
                    details={"password_rehashed": "yes"} if rehashed else {},
                )
            )
            await uow.commit()
        return self._pair(user, session, refresh_token, now)

    async def _count_failure(
        self, email_index: bytes, user: User | None, now: datetime, request: RequestInfo
    ) -> None:
        async with self._uow() as uow:
            before = await uow.identity.lock_failed_sign_ins(email_index)
            after = before.after_failure(now, self._settings.lockout)
            await uow.identity.save_failed_sign_ins(email_index, after, now)
            await uow.identity.record(
                self._sign_in_event(Outcome.FAILURE, now, user, email_index, request, "credentials")
            )
            if after.locked(now) and not before.locked(now):
                await uow.identity.record(
                    SecurityEvent(
                        EventKind.ACCOUNT_LOCKED,
                        Outcome.DENIED,
                        now,
                        actor="",
                        user_id=user.id if user else None,
                        client_ip=request.client_ip,
                        request_id=request.request_id,
                        details={
                            "email_index": email_index.hex(),
                            "locked_seconds": str(self._settings.lockout.lock_seconds),
                        },
                    )
                )
            await uow.commit()

    @staticmethod
    def _sign_in_event(
        outcome: Outcome,
        now: datetime,
        user: User | None,
        email_index: bytes,
        request: RequestInfo,
        why: str,
    ) -> SecurityEvent:
        details = {"email_index": email_index.hex()}
        if why:
            details["reason"] = why
        return SecurityEvent(
            EventKind.SIGN_IN,
            outcome,
            now,
            actor="",
            user_id=user.id if user else None,
            client_ip=request.client_ip,
            request_id=request.request_id,
            details=details,
        )

    # -- refresh ----------------------------------------------------------------------

    async def refresh(self, refresh_token: str, request: RequestInfo) -> TokenPair:
        if not refresh_token:
            raise InvalidRequest("refresh_token is required", field="refresh_token")
        if not plausible_refresh_token(refresh_token):
            raise TokenInvalid()
        token_hash = hash_refresh_token(refresh_token)
        now = self._clock.now()
        new_token, new_hash = new_refresh_token()
        async with self._uow() as uow:
            found = await uow.identity.refresh_token_by_hash(token_hash)
            if found is None:
                raise TokenInvalid()
            # The session row is the family's lock: every refresh of the
            # family queues here, and re-reads its token once it holds it.
            session = await uow.identity.lock_session(found.session_id)
            token = await uow.identity.refresh_token_by_hash(token_hash)
            if session is None or token is None:
                raise TokenInvalid()
            verdict = judge(session, token, now)
            if verdict is Verdict.ENDED:
                raise TokenInvalid()
            if verdict is Verdict.EXPIRED:
                raise TokenExpired()
            if verdict is Verdict.REUSED:
                await uow.identity.end_session(session.id, now, EndReason.REFRESH_TOKEN_REUSED)
                await uow.identity.record(
                    SecurityEvent(
                        EventKind.REFRESH_TOKEN_REUSED,
                        Outcome.DENIED,
                        now,
                        actor="",
                        user_id=session.user_id,
                        session_id=session.id,
                        client_ip=request.client_ip,
                        request_id=request.request_id,
                        details={"action": "session_revoked"},
                    )
                )
                await uow.commit()
                user = None
            else:
                user = await uow.identity.get_user(session.user_id)
                if user is None or not await uow.identity.spend_refresh_token(token.id, now):
                    raise TokenInvalid()
                await uow.identity.add_refresh_token(
                    RefreshToken(uuid.uuid4(), session.id, new_hash, now)
                )
                await uow.identity.record(
                    SecurityEvent(
                        EventKind.REFRESH,
                        Outcome.SUCCESS,
                        now,
                        actor=str(user.id),
                        user_id=user.id,
                        session_id=session.id,
                        client_ip=request.client_ip,
                        request_id=request.request_id,
                    )
                )
                await uow.commit()
        if user is None:
            log.warning(
                "refresh token reused: session %s of user %s revoked", session.id, session.user_id
            )
            await self._publish_quietly(session.id)
            raise RefreshTokenReused()
        return self._pair(user, session, new_token, now)

    # -- logout -----------------------------------------------------------------------

    async def logout(self, refresh_token: str, end_user_id: str, request: RequestInfo) -> None:
        """End the token's session. An unknown token is not an error (RFC 7009 §2.2).

        When the call is made for an end user, only their own sessions end.
        """
        if not refresh_token:
            raise InvalidRequest("refresh_token is required", field="refresh_token")
        if not plausible_refresh_token(refresh_token):
            return
        now = self._clock.now()
        async with self._uow() as uow:
            found = await uow.identity.refresh_token_by_hash(hash_refresh_token(refresh_token))
            if found is None:
                return
            session = await uow.identity.lock_session(found.session_id)
            if session is None:
                return
            if end_user_id and end_user_id != str(session.user_id):
                await uow.identity.record(
                    SecurityEvent(
                        EventKind.LOGOUT,
                        Outcome.DENIED,
                        now,
                        actor=end_user_id,
                        user_id=session.user_id,
                        session_id=session.id,
                        client_ip=request.client_ip,
                        request_id=request.request_id,
                        details={"reason": "not the caller's session"},
                    )
                )
                await uow.commit()
                return
            if session.ended_at is None:
                await uow.identity.end_session(session.id, now, EndReason.LOGOUT)
                await uow.identity.record(
                    SecurityEvent(
                        EventKind.LOGOUT,
                        Outcome.SUCCESS,
                        now,
                        actor=end_user_id or str(session.user_id),
                        user_id=session.user_id,
                        session_id=session.id,
                        client_ip=request.client_ip,
                        request_id=request.request_id,
                    )
                )
                await uow.commit()
        # Also when it had ended before: a retry after Redis failed publishes it.
        await self._revocations.revoke([session.id])

    # -- helpers ----------------------------------------------------------------------

    def _pair(self, user: User, session: Session, refresh_token: str, now: datetime) -> TokenPair:
        access = self._tokens.issue(
            TokenSubject(user.id, user.customer_id, frozenset(user.roles), session.id), now
        )
        return TokenPair(
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=refresh_token,
            refresh_expires_in=session.seconds_left(now),
            session_id=session.id,
        )

    async def _publish_quietly(self, session_id: uuid.UUID) -> None:
        try:
            await self._revocations.revoke([session_id])
        except DependencyUnavailable:
            log.warning(
                "could not publish the revocation of session %s: its access tokens "
                "stay valid until they expire",
                session_id,
            )

    async def _record(self, event: SecurityEvent) -> None:
        async with self._uow() as uow:
            await uow.identity.record(event)
            await uow.commit()
