"""Use cases for messages: post (idempotent per client_id), page through history, edit, delete."""

import math
from dataclasses import dataclass

from convocore.application.conversations import load_for_member
from convocore.application.ports import Clock, IdGenerator, Publisher, RateLimiter, UnitOfWorkFactory
from convocore.domain import messages
from convocore.domain.errors import Invalid, NotFound, RateLimited
from convocore.domain.events import MessageCreated, MessageDeleted, MessageUpdated
from convocore.domain.messages import Message

PAGE_DEFAULT, PAGE_MAX = 50, 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """At most ``limit`` events per ``window_s`` seconds."""

    limit: int
    window_s: float


async def spend(limiter: RateLimiter | None, budget: Budget, key: str, what: str) -> None:
    if limiter is None:
        return
    wait = await limiter.hit(key, limit=budget.limit, window_s=budget.window_s)
    if wait is not None:
        raise RateLimited(
            f"at most {budget.limit} {what} per {budget.window_s:g} s; try again shortly",
            retry_after=max(1, math.ceil(wait)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Posted:
    message: Message
    created: bool


SEND_BUDGET = Budget(limit=20, window_s=10)


class PostMessage:
    """Sends over REST and over sockets share one budget per user (none when embedding
    without a limiter)."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        broadcaster: Publisher,
        ids: IdGenerator,
        clock: Clock,
        limiter: RateLimiter | None = None,
        budget: Budget = SEND_BUDGET,
    ) -> None:
        self._uow, self._broadcaster, self._ids, self._clock = uow, broadcaster, ids, clock
        self._limiter, self._budget = limiter, budget

    async def execute(
        self,
        *,
        user_id: str,
        conversation_id: str,
        body: str,
        client_id: str | None = None,
        reply_to: int | None = None,
    ) -> Posted:
        """The same (sender, conversation, client_id) again returns the original, unchanged."""
        messages.validate_body(body)
        messages.validate_client_id(client_id)
        await spend(self._limiter, self._budget, f"send:{user_id}", "messages")
        retry = (conversation_id, user_id, client_id or "")  # what finds a retry's original
        async with self._uow() as uow:
            # Locking the conversation row serialises seq allocation and the client_id check.
            conversation, sender = await load_for_member(
                uow, conversation_id=conversation_id, user_id=user_id, for_update=True
            )
            try:
                message = messages.post(
                    conversation,
                    sender=sender,
                    message_id=self._ids.new_id(),
                    body=body,
                    client_id=client_id,
                    reply_to=reply_to,
                    now=self._clock.now(),
                )
            except Invalid:  # a retry is answered with its original even if it is not valid now
                if client_id is None or (original := await uow.messages.get_by_client_id(*retry)) is None:
                    raise
                return Posted(message=original, created=False)
            # The client_id is checked by the insert itself (one statement, not a lookup
            # first): a retry stores nothing and is answered with the original. Leaving the
            # block without commit drops what posting changed in memory.
            if not await uow.messages.add(message):
                original = await uow.messages.get_by_client_id(*retry)
                if original is None:  # the insert saw it: it is there
                    raise RuntimeError("a client_id reported used has no message")
                return Posted(message=original, created=False)
            await uow.conversations.save(conversation)
            await uow.members.save(sender)
            await uow.commit()
        await self._broadcaster.publish(MessageCreated(message=message))
        return Posted(message=message, created=True)


class ListMessages:
    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def execute(
        self,
        *,
        user_id: str,
        conversation_id: str,
        before: int | None = None,
        after: int | None = None,
        limit: int = PAGE_DEFAULT,
    ) -> tuple[list[Message], bool]:
        """A page in ascending seq and whether more lie beyond it in the paging direction."""
        if not 1 <= limit <= PAGE_MAX:
            raise Invalid(f"1 to {PAGE_MAX}", field="limit")
        for name, value in (("before", before), ("after", after)):
            if value is not None:
                messages.validate_seq(value, field=name, minimum=0)
        async with self._uow() as uow:
            await load_for_member(uow, conversation_id=conversation_id, user_id=user_id)
            found = await uow.messages.page(conversation_id, before=before, after=after, limit=limit + 1)
        if len(found) <= limit:
            return found, False
        newest_end = after is None
        return (found[1:] if newest_end else found[:limit]), True


class EditMessage:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher, clock: Clock) -> None:
        self._uow, self._broadcaster, self._clock = uow, broadcaster, clock

    async def execute(self, *, user_id: str, conversation_id: str, seq: int, body: str) -> Message:
        messages.validate_seq(seq)
        async with self._uow() as uow:
            _, actor = await load_for_member(uow, conversation_id=conversation_id, user_id=user_id)
            message = await uow.messages.get(conversation_id, seq)
            if message is None:
                raise NotFound("no such message")
            message.edit(actor=actor, body=body, now=self._clock.now())
            await uow.messages.save(message)
            await uow.commit()
        await self._broadcaster.publish(MessageUpdated(message=message))
        return message


class DeleteMessage:
    def __init__(self, *, uow: UnitOfWorkFactory, broadcaster: Publisher, clock: Clock) -> None:
        self._uow, self._broadcaster, self._clock = uow, broadcaster, clock

    async def execute(self, *, user_id: str, conversation_id: str, seq: int) -> Message:
        messages.validate_seq(seq)
        async with self._uow() as uow:
            _, actor = await load_for_member(uow, conversation_id=conversation_id, user_id=user_id)
            message = await uow.messages.get(conversation_id, seq)
            if message is None:
                raise NotFound("no such message")
            if not message.delete(actor=actor, now=self._clock.now()):
                return message
            await uow.messages.save(message)
            await uow.commit()
        await self._broadcaster.publish(MessageDeleted(message=message))
        return message
