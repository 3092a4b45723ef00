"""One shallow tree of domain error meanings. No transport details live here."""


class DomainError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""


class Forbidden(DomainError):
    """The caller is known and may see the thing, but may not do this to it."""


class Conflict(DomainError):
    """The request clashes with the current state (a taken name, a deleted message)."""


class Invalid(DomainError):
    """The input breaks a rule; ``field`` names the offending input."""


class Unauthenticated(DomainError):
    """Missing, unknown, expired or revoked credentials."""


class Unavailable(DomainError):
    """A backing service is busy or unreachable; the caller may retry."""

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RateLimited(DomainError):
    """Too much too fast; the caller may try again after ``retry_after`` seconds."""

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
