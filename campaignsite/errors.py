"""Domain errors shared by every app.

Services raise these; adapters map them once: SOAP to a fault (campaignsite.soap), REST to a status
code and JSON body (campaignsite.api), commands to CommandError. Each carries a stable code of
Campaign's shape (`AAA-NNNNNN`, see docs/error-codes.md) and, when input was at fault, the list of
problems naming the record, attribute and value.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    message: str
    record: int | None = None  # 0-based index of the record in the call
    attribute: str | None = None
    value: str | None = None
    line: int | None = None  # line in the submitted document

    def __str__(self) -> str:
        where = []
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.attribute is not None:
            where.append(f"attribute '{self.attribute}'")
        if self.value is not None:
            shown = self.value if len(self.value) <= 80 else self.value[:77] + "..."
            where.append(f"value '{shown}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class DomainError(Exception):
    code = "CST-400000"
    status = 400
    client_fault = True  # the caller can fix it (SOAP-ENV:Client) vs our side (SOAP-ENV:Server)

    def __init__(self, message: str, problems: list[Problem] | tuple[Problem, ...] = ()):
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)

    @property
    def detail(self) -> str:
        """The long explanation: the message, then one line per problem."""
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"- {p}" for p in self.problems)


class InvalidXml(DomainError):
    code = "CST-400001"


class TooLarge(DomainError):
    code = "CST-413000"
    status = 413


class SchemaInvalid(DomainError):
    code = "CST-400100"


class NotFound(DomainError):
    code = "CST-404000"
    status = 404


class Conflict(DomainError):
    code = "CST-409000"
    status = 409


class StructureRefused(Conflict):
    code = "CST-409100"


class InvalidInput(DomainError):
    """Records or parameters that do not fit: each problem names the record, attribute and value."""

    code = "CST-400200"


class Unauthenticated(DomainError):
    code = "CST-401000"
    status = 401


class Throttled(DomainError):
    """Too many recent failures: refused without doing the work; `retry_after` seconds to wait."""

    code = "CST-429000"
    status = 429

    def __init__(self, message: str, problems=(), *, retry_after: int):
        super().__init__(message, problems)
        self.retry_after = retry_after


class Forbidden(DomainError):
    code = "CST-403000"
    status = 403


class ServiceUnavailable(DomainError):
    """Our side cannot serve the call now (e.g. the cloud database is unreachable)."""

    code = "CST-503000"
    status = 503
    client_fault = False
