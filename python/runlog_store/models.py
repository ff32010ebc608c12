"""The run log models: the JSON of runnable 0.50's ``runnable.datastore`` as pydantic v2 models.

Field names, defaults and the computed ``description`` of parameters are runnable's, so the JSON
written here is accepted by ``runnable.datastore.RunLog`` and every run log runnable writes is
read here. Two deliberate differences:

* The structural models (run, step, branch, job, attempt, code identity, catalog entry) keep
  fields they do not declare (``extra="allow"``). Run logs of older layouts carry step-level
  ``code_identities``, ``use_cached``, ``original_run_id``, attempt ``duration`` and
  ``parameters``; a newer runnable may add more. Reading and writing such a log back loses
  nothing.
* Finding steps and branches by dot path raises this package's typed errors.

Float NaN and infinities are written as runnable's ``json.dump`` writes them, the bare tokens
``NaN``, ``Infinity`` and ``-Infinity`` (``ser_json_inf_nan="constants"``), not as ``null``: a
metric that is NaN reads back as NaN from every store, and what runnable wrote stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, computed_field

from runlog_store.exceptions import BranchLogNotFoundError, StepLogNotFoundError

# Statuses runnable uses. A step goes CREATED -> PROCESSING -> SUCCESS | FAIL.
CREATED = "CREATED"
PROCESSING = "PROCESSING"
SUCCESS = "SUCCESS"
FAIL = "FAIL"
TRIGGERED = "TRIGGERED"
# A run, branch or step in one of these has ended: nothing more will be written to it.
ENDED_STATUSES = frozenset({SUCCESS, FAIL})

# pydantic takes the serialisation setting of the outermost model dumped, so every model that
# can be dumped on its own says it.
_NON_FINITE = ConfigDict(ser_json_inf_nan="constants")
_KEEP_UNKNOWN = ConfigDict(extra="allow", ser_json_inf_nan="constants")


def _short(value: JsonValue) -> JsonValue:
    # runnable shows long strings truncated to 10 characters in summaries.
    return value if not isinstance(value, str) or len(value) <= 10 else f"{value[:10]}..."


class JsonParameter(BaseModel):
    """A JSON-serialisable parameter passed between steps."""

    model_config = _NON_FINITE

    kind: Literal["json"]
    value: JsonValue

    @computed_field  # type: ignore[prop-decorator]
    @property
    def description(self) -> JsonValue:
        return _short(self.value)

    def get_value(self) -> JsonValue:
        return self.value


class MetricParameter(BaseModel):
    """A parameter a step marked as a metric; the run collects them."""

    model_config = _NON_FINITE

    kind: Literal["metric"]
    value: JsonValue

    @computed_field  # type: ignore[prop-decorator]
    @property
    def description(self) -> JsonValue:
        return _short(self.value)

    def get_value(self) -> JsonValue:
        return self.value


class ObjectParameter(BaseModel):
    """A parameter too large or too rich for JSON: only its name is logged, the object is
    pickled into the catalog.

    runnable derives the description from its run context; without one we keep the stored
    description, or say the object was pickled (runnable's default).
    """

    model_config = _NON_FINITE

    kind: Literal["object"]
    value: str
    stored_description: str | None = Field(
        default=None, validation_alias="description", exclude=True, repr=False
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def description(self) -> str:
        if self.stored_description is not None:
            return self.stored_description
        return f"Pickled object stored in catalog as: {self.value}"

    def get_value(self) -> str:
        return self.value


Parameter = Annotated[
    JsonParameter | ObjectParameter | MetricParameter, Field(discriminator="kind")
]


class CodeIdentity(BaseModel):
    """What code ran: a git sha (and whether the tree was clean) or a container digest."""

    model_config = _KEEP_UNKNOWN

    code_identifier: str | None = ""
    code_identifier_type: str | None = ""
    code_identifier_dependable: bool | None = False
    code_identifier_url: str | None = ""
    code_identifier_message: str | None = ""


class DataCatalog(BaseModel):
    """One file a step put into or got from the catalog, with the hash of its content."""

    model_config = _KEEP_UNKNOWN

    name: str
    data_hash: str = ""
    catalog_relative_path: str = ""
    catalog_handler_location: str = ""
    stage: str = ""

    def __hash__(self) -> int:
        # runnable de-duplicates catalog entries by name in sets.
        return hash(self.name)


class StepAttempt(BaseModel):
    """One execution of a step: times, status, error message, parameters in and out."""

    model_config = _KEEP_UNKNOWN

    attempt_number: int = 1
    start_time: str = ""
    end_time: str = ""
    status: str = FAIL
    message: str = ""
    input_parameters: dict[str, Parameter] = Field(default_factory=dict)
    output_parameters: dict[str, Parameter] = Field(default_factory=dict)
    user_defined_metrics: dict[str, Parameter] = Field(default_factory=dict)
    retry_indicator: str = ""
    code_identities: list[CodeIdentity] = Field(default_factory=list)

    @property
    def duration(self) -> str:
        """Wall time of the attempt as runnable prints it (``0:00:01.5``)."""
        start = datetime.fromisoformat(self.start_time)
        end = datetime.fromisoformat(self.end_time)
        return str(end - start)

    @property
    def duration_seconds(self) -> float | None:
        """Wall time in seconds, or None when a time is missing or unparsable."""
        try:
            start = datetime.fromisoformat(self.start_time)
            end = datetime.fromisoformat(self.end_time)
        except ValueError:
            return None
        return (end - start).total_seconds()


class StepLog(BaseModel):
    """A step of the pipeline, with its attempts and, for map and parallel steps, branches."""

    model_config = _KEEP_UNKNOWN

    name: str
    internal_name: str
    status: str = FAIL
    step_type: str = "task"
    message: str = ""
    mock: bool = False
    attempts: list[StepAttempt] = Field(default_factory=list)
    branches: dict[str, BranchLog] = Field(default_factory=dict)
    data_catalog: list[DataCatalog] = Field(default_factory=list)

    def get_data_catalogs_by_stage(self, stage: str = "put") -> list[DataCatalog]:
        """Catalog entries of this step and of every step in its branches."""
        _check_stage(stage)
        found = [dc for dc in self.data_catalog if dc.stage == stage]
        for branch in self.branches.values():
            found.extend(branch.get_data_catalogs_by_stage(stage))
        return found

    def add_data_catalogs(self, data_catalogs: list[DataCatalog]) -> None:
        self.data_catalog.extend(data_catalogs)

    def get_summary(self) -> dict[str, Any]:
        """The same summary runnable logs for a step."""
        return {
            "Name": self.internal_name,
            "Input catalog content": [dc.name for dc in self.data_catalog if dc.stage == "get"],
            "Available parameters": [
                (p, v.description) for a in self.attempts for p, v in a.input_parameters.items()
            ],
            "Output catalog content": [dc.name for dc in self.data_catalog if dc.stage == "put"],
            "Output parameters": [
                (p, v.description) for a in self.attempts for p, v in a.output_parameters.items()
            ],
            "Metrics": [
                (p, v.description) for a in self.attempts for p, v in a.user_defined_metrics.items()
            ],
            "Code identities": [
                _describe_code_identity(ci) for a in self.attempts for ci in a.code_identities
            ],
            "status": self.status,
        }


class BranchLog(BaseModel):
    """A branch of a map or parallel step: its own steps and its own parameter scope."""

    model_config = _KEEP_UNKNOWN

    internal_name: str
    status: str = FAIL
    steps: dict[str, StepLog] = Field(default_factory=dict)
    parameters: dict[str, Parameter] = Field(default_factory=dict)

    def get_data_catalogs_by_stage(self, stage: str = "put") -> list[DataCatalog]:
        _check_stage(stage)
        found: list[DataCatalog] = []
        for step in self.steps.values():
            found.extend(step.get_data_catalogs_by_stage(stage))
        return found


StepLog.model_rebuild()


class JobLog(BaseModel):
    """The log of a job (a single task run outside a pipeline); shaped like a step log."""

    model_config = _KEEP_UNKNOWN

    status: str = FAIL
    message: str = ""
    mock: bool = False
    code_identities: list[CodeIdentity] = Field(default_factory=list)
    attempts: list[StepAttempt] = Field(default_factory=list)
    data_catalog: list[DataCatalog] = Field(default_factory=list)

    def add_data_catalogs(self, data_catalogs: list[DataCatalog]) -> None:
        self.data_catalog.extend(data_catalogs)


class RunLog(BaseModel):
    """Everything about one run of a pipeline or job."""

    model_config = _KEEP_UNKNOWN

    run_id: str
    dag_hash: str | None = None
    tag: str | None = ""
    status: str = FAIL
    steps: dict[str, StepLog] = Field(default_factory=dict)
    job: JobLog | None = None
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    run_config: dict[str, Any] = Field(default_factory=dict)

    def get_data_catalogs_by_stage(self, stage: str = "put") -> list[DataCatalog]:
        """Catalog entries of every step, de-duplicated by name (as runnable does)."""
        _check_stage(stage)
        seen: dict[str, DataCatalog] = {}
        for step in self.steps.values():
            for dc in step.get_data_catalogs_by_stage(stage):
                seen.setdefault(dc.name, dc)
        return list(seen.values())

    def search_step_by_internal_name(self, i_name: str) -> tuple[StepLog, BranchLog | None]:
        """The step named by a dot path and the branch holding it (None for a root step)."""
        path = self._descend(i_name)
        node = path[-1] if path else None
        if not isinstance(node, StepLog) or node.internal_name != i_name:
            raise StepLogNotFoundError(self.run_id, i_name)
        parent = path[-2] if len(path) > 1 else None
        assert parent is None or isinstance(parent, BranchLog)
        return node, parent

    def search_branch_by_internal_name(
        self, i_name: str
    ) -> tuple[BranchLog | RunLog, StepLog | None]:
        """The branch named by a dot path and the step holding it; the run itself for ``""``."""
        if not i_name:
            return self, None
        path = self._descend(i_name)
        node = path[-1] if path else None
        if not isinstance(node, BranchLog) or node.internal_name != i_name:
            raise BranchLogNotFoundError(self.run_id, i_name)
        parent = path[-2]
        assert isinstance(parent, StepLog)
        return node, parent

    def _descend(self, i_name: str) -> list[StepLog | BranchLog]:
        """The stored nodes on the way down to ``i_name``, root first.

        Each level takes the longest dot-prefix of ``i_name`` stored there, so a dot inside a
        step name or a map value does not mislead the walk (the merger's rule, docs/format.md).
        """
        prefixes = _dot_prefixes(i_name)
        path: list[StepLog | BranchLog] = []
        children: Mapping[str, StepLog | BranchLog] = self.steps
        while True:
            name = next((p for p in reversed(prefixes) if p in children), None)
            if name is None:
                return path
            node = children[name]
            path.append(node)
            if name == i_name:
                return path
            children = node.branches if isinstance(node, StepLog) else node.steps

    def place_step(self, step: StepLog) -> None:
        """Store ``step`` under the deepest stored branch its name continues (else at the root).

        A stored step of the same name is replaced, but its branches are kept where the new
        step does not carry them: branches are written on their own, often by other
        processes, and re-storing a step (to change its status) must not drop them.

        A step whose branch is not stored is refused with BranchLogNotFoundError naming that
        branch (its name less the last part), as runnable refuses it: its name continues a
        stored step but none of that step's branches, or it continues nothing stored while its
        name less the last part names a branch (``<step>.<key>``, see :func:`names_a_branch`).
        A root step may still have a dot in its name (``v1.2``).
        """
        name = step.internal_name
        path = list(self._descend(name))
        above = path[:-1] if path and path[-1].internal_name == name else path
        if not (path and path[-1].internal_name == name):
            parent = parent_name(name)
            below_a_step = bool(above) and isinstance(above[-1], StepLog)
            if below_a_step or (not above and names_a_branch(parent)):
                raise BranchLogNotFoundError(self.run_id, parent)
        branches = [node for node in above if isinstance(node, BranchLog)]
        siblings = branches[-1].steps if branches else self.steps
        old = siblings.get(name)
        if old is not None and old is not step and old.branches:
            step.branches = {**old.branches, **step.branches}
        siblings[name] = step

    def place_branch(self, branch: BranchLog) -> None:
        """Store ``branch`` under the deepest stored step its name continues.

        Like :meth:`place_step`, stored steps of the branch the new one does not carry are kept.
        """
        path = list(self._descend(branch.internal_name))
        steps = [node for node in path if isinstance(node, StepLog)]
        if not steps or steps[-1].internal_name == branch.internal_name:
            step_name = parent_name(branch.internal_name)
            raise StepLogNotFoundError(self.run_id, step_name or branch.internal_name)
        siblings = steps[-1].branches
        old = siblings.get(branch.internal_name)
        if old is not None and old is not branch and old.steps:
            branch.steps = {**old.steps, **branch.steps}
        siblings[branch.internal_name] = branch

    def find_step(self, i_name: str) -> StepLog:
        """The step at a dot path such as ``map.3.work``; StepLogNotFoundError if absent."""
        return self.search_step_by_internal_name(i_name)[0]

    def find_branch(self, i_name: str) -> BranchLog:
        """The branch at a dot path such as ``map.3``; BranchLogNotFoundError if absent."""
        branch, _ = self.search_branch_by_internal_name(i_name)
        if not isinstance(branch, BranchLog):
            raise BranchLogNotFoundError(self.run_id, i_name)
        return branch

    def iter_steps(self) -> Iterator[StepLog]:
        """Every step at every depth, parents before their branches' steps."""
        stack = list(reversed(self.steps.values()))
        while stack:
            step = stack.pop()
            yield step
            for branch in reversed(list(step.branches.values())):
                stack.extend(reversed(branch.steps.values()))


def parent_name(internal_name: str) -> str:
    """The internal name of the parent (branch of a step, step of a branch); "" for the run."""
    head, sep, _ = internal_name.rpartition(".")
    return head if sep else ""


def names_a_branch(name: str) -> bool:
    """Whether a name can be a branch's: ``<step>.<key>``, dot-separated parts none empty."""
    parts = name.split(".")
    return len(parts) > 1 and all(parts)


def _dot_prefixes(i_name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]``."""
    parts = i_name.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


def _check_stage(stage: str) -> None:
    if stage not in ("get", "put"):
        raise ValueError(f"stage must be 'get' or 'put', not {stage!r}")


def _describe_code_identity(ci: CodeIdentity) -> str:
    message = f"{ci.code_identifier_type}:{ci.code_identifier}"
    if not ci.code_identifier_dependable:
        message += " but is not dependable"
    return message


__all__ = [
    "CREATED",
    "ENDED_STATUSES",
    "FAIL",
    "PROCESSING",
    "SUCCESS",
    "TRIGGERED",
    "BranchLog",
    "CodeIdentity",
    "DataCatalog",
    "JobLog",
    "JsonParameter",
    "MetricParameter",
    "ObjectParameter",
    "Parameter",
    "RunLog",
    "StepAttempt",
    "StepLog",
    "names_a_branch",
    "parent_name",
]
