"""What both contract suites share: the base of their classes (a binding loses the tests its
declarations rule out), the reading of a binding's config fixture, and the check that a
service's summary is plain data and shows no secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

# Configuration keys whose values a summary must never show (the words the registry hides).
SECRET_WORDS = ("secret", "password", "token", "access_key", "credential", "private_key")


def secret_values(service: BaseModel) -> list[str]:
    """The configured values of ``service`` that are secrets: SecretStr fields, and string
    fields whose names say secret, password, token, access key..."""
    found = []
    for name in type(service).model_fields:
        value = getattr(service, name)
        if isinstance(value, SecretStr | SecretBytes):
            secret = value.get_secret_value()
            found.append(secret.decode() if isinstance(secret, bytes) else secret)
        elif isinstance(value, str) and any(word in name.lower() for word in SECRET_WORDS):
            found.append(value)
    return [value for value in found if len(value) >= 4]


def check_summary(service: Any) -> None:
    """A summary is a JSON-able dict that names the service's type and shows no secret."""
    summary = service.get_summary()
    assert isinstance(summary, dict), f"get_summary() returned {type(summary).__name__}"
    assert summary.get("Type") == service.service_name, summary
    shown = json.dumps(summary) + repr(summary)
    for secret in secret_values(service):
        assert secret not in shown, "get_summary() shows a secret of the configuration"


_Test = TypeVar("_Test", bound=Callable[..., Any])


def needs(*flags: str) -> Callable[[_Test], _Test]:
    """Marks a contract test that applies only to implementations whose binding class keeps
    every one of ``flags`` true (``keeps_files``, ``shared_between_processes``...). A binding
    that declares one false does not collect the test at all: it is not part of that
    implementation's contract, so it is neither run nor reported as skipped."""

    def mark(test: _Test) -> _Test:
        test.__contract_needs__ = flags  # type: ignore[attr-defined]
        return test

    return mark


def drop_inapplicable(cls: type) -> None:
    """Remove from a binding class the tests its declarations rule out (pytest collects no
    attribute that is None)."""
    for name in dir(cls):
        if not name.startswith("test_"):
            continue
        flags = getattr(getattr(cls, name), "__contract_needs__", ())
        if any(not getattr(cls, flag) for flag in flags):
            setattr(cls, name, None)


class ContractSuite:
    """Base of every class of a contract suite, mixins and bindings alike: each subclass is
    stripped of the tests its declarations rule out (see ``needs``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        drop_inapplicable(cls)


def missing_config(suite: object, fixture: str, kind: str, contract: str) -> NoReturn:
    """Fail a test of a binding class that did not define its config fixture."""
    pytest.fail(
        f"{type(suite).__name__} must define a {fixture} fixture returning "
        f'{{"type": <{kind} type>, **config}} over fresh storage (see {contract})'
    )


def split_config(config: Any, fixture: str, kind: str) -> tuple[str, dict[str, Any]]:
    """A config fixture's value as (type name, configuration keys)."""
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise TypeError(
            f"{fixture} must be a dict with a 'type' (a registered {kind} type name) and the "
            f"{kind}'s configuration keys, not {config!r}"
        )
    rest = dict(config)
    return rest.pop("type"), rest
