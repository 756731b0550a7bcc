"""Build flyteidl ``TaskTemplate``s from Python types and bind notebook inputs to their interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteidl.core import identifier_pb2, interface_pb2, literals_pb2, tasks_pb2, types_pb2
from google.protobuf import json_format, struct_pb2

from . import __version__
from .errors import InputError
from .literals import _json_ints, infer_type, literal_type, to_literal, to_literal_map, type_name

_S = types_pb2.SimpleType


def _variables(types: Mapping[str, Any] | None) -> interface_pb2.VariableMap:
    types = types or {}
    variables = {n: interface_pb2.Variable(type=literal_type(t, field=n), description=n) for n, t in types.items()}
    return interface_pb2.VariableMap(variables=variables)


def _struct(custom: Mapping[str, Any]) -> struct_pb2.Struct:
    for key, value in custom.items():
        # Checked key by key so the error can name the offending entry (ParseDict only names the value).
        try:
            if not isinstance(key, str):
                raise TypeError(f"key must be str, got {type(key).__name__}")
            json_format.ParseDict({key: value}, struct_pb2.Struct())
        except (ValueError, TypeError, json_format.ParseError) as e:
            raise InputError(f"custom[{key!r}] is not JSON-serialisable: {e}") from None
    return json_format.ParseDict(dict(custom), struct_pb2.Struct())


def task_template(
    task_type: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    custom: Mapping[str, Any] | None = None,
    version: int = 0,
    name: str | None = None,
) -> tasks_pb2.TaskTemplate:
    """A TaskTemplate for ``task_type`` whose interface is given as Python types (or LiteralTypes)."""
    template = tasks_pb2.TaskTemplate(
        type=task_type,
        task_type_version=version,
        id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.ResourceType.TASK, project="connector_nb", domain="development",
            name=name or task_type, version=str(version),
        ),
        interface=interface_pb2.TypedInterface(inputs=_variables(inputs), outputs=_variables(outputs)),
        metadata=tasks_pb2.TaskMetadata(
            runtime=tasks_pb2.RuntimeMetadata(
                type=tasks_pb2.RuntimeMetadata.OTHER, version=__version__, flavor="connector_nb"
            )
        ),
    )
    if custom is not None:
        template.custom.CopyFrom(_struct(custom))
    return template


def interface_types(
    template: tasks_pb2.TaskTemplate,
) -> tuple[dict[str, types_pb2.LiteralType], dict[str, types_pb2.LiteralType]]:
    """The (inputs, outputs) LiteralTypes of a template's interface, sorted by name."""
    # Protobuf maps keep no order (iteration varies between processes), so sort for stable messages and forms.
    iface = template.interface
    return (
        {n: iface.inputs.variables[n].type for n in sorted(iface.inputs.variables)},
        {n: iface.outputs.variables[n].type for n in sorted(iface.outputs.variables)},
    )


def custom_dict(template: tasks_pb2.TaskTemplate) -> dict[str, Any]:
    """The template's ``custom`` Struct as a dict ({} when unset)."""
    return _json_ints(json_format.MessageToDict(template.custom)) if template.HasField("custom") else {}


def _optional(lt: types_pb2.LiteralType) -> bool:
    if lt.WhichOneof("type") == "simple":
        return bool(lt.simple == _S.NONE)
    return lt.WhichOneof("type") == "union_type" and any(_optional(v) for v in lt.union_type.variants)


def _signature(types: Mapping[str, types_pb2.LiteralType]) -> str:
    return ", ".join(f"{n} ({type_name(t)})" for n, t in types.items()) or "no inputs"


def bind_inputs(
    template: tasks_pb2.TaskTemplate,
    inputs: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None = None,
) -> literals_pb2.LiteralMap:
    """Check ``inputs`` (over ``defaults``) against the template's interface and convert them to literals."""
    values = {**(defaults or {}), **(inputs or {})}
    types, _ = interface_types(template)
    if not types:  # the target publishes no interface: describe the values themselves
        return to_literal_map(values)
    task = template.id.name or template.type
    unknown = [n for n in values if n not in types]
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise InputError(f"task {task!r} has no input{plural} {names}; expected: {_signature(types)}")
    missing = [n for n, t in types.items() if n not in values and not _optional(t)]
    if missing:
        raise InputError(
            f"task {task!r} is missing required input{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(n) for n in missing)}; expected: {_signature(types)}"
        )
    # Optional inputs left out are sent as an explicit None so the connector always sees every name.
    literals = {n: to_literal(values.get(n), t, field=n) for n, t in types.items()}
    return literals_pb2.LiteralMap(literals=literals)


def with_inferred_interface(
    task_type: str,
    inputs: Mapping[str, Any],
    *,
    custom: Mapping[str, Any] | None = None,
    version: int = 0,
) -> tasks_pb2.TaskTemplate:
    """A template whose input interface is inferred from ``inputs`` (for services that publish none)."""
    types = {n: infer_type(v) for n, v in inputs.items()}
    return task_template(task_type, inputs=types, custom=custom, version=version)


def as_task_template(task: Any) -> tasks_pb2.TaskTemplate:
    """A TaskTemplate as it is, or the template of a flytekit task object (``FileSensor(name=...)``).

    The foreign template is built by the framework's own serialization, so ``session.launch(task, ...)``
    binds inputs against exactly the interface the framework declares.
    """
    if isinstance(task, tasks_pb2.TaskTemplate):
        return task
    from .adapters._lookup import task_template_of

    template = task_template_of(task)
    if template is None:
        raise TypeError(f"task: expected a task type name (str), a TaskTemplate or a flytekit task object, "
                        f"got {type(task).__name__}")
    return template


def with_custom(template: tasks_pb2.TaskTemplate | Any, custom: Mapping[str, Any] | None) -> tasks_pb2.TaskTemplate:
    """A copy of ``template`` whose ``custom`` is replaced by ``custom`` (the template itself when None).

    ``template`` may also be a flytekit task object: this is where launching one turns it into its template.
    """
    template = as_task_template(template)
    if not custom:
        return template
    copy = tasks_pb2.TaskTemplate()
    copy.CopyFrom(template)
    copy.custom.CopyFrom(_struct(custom))
    return copy


def execution_metadata(
    template: tasks_pb2.TaskTemplate, run_id: str, given: Any = None
) -> Any:
    """``TaskExecutionMetadata`` shaped like propeller's, whose execution name is ``run_id``.

    Connectors that deduplicate on the execution id then see one id per run, however often we are asked.
    A ``given`` metadata is kept, with the run id filled in where its execution name is empty.
    """
    from flyteidl.admin import agent_pb2

    ids = identifier_pb2
    if given is not None:
        metadata = agent_pb2.TaskExecutionMetadata()
        metadata.CopyFrom(given)
        execution = metadata.task_execution_id.node_execution_id.execution_id
        if not execution.name:
            execution.name = run_id
        return metadata
    execution = ids.WorkflowExecutionIdentifier(project=template.id.project, domain=template.id.domain, name=run_id)
    task_execution = ids.TaskExecutionIdentifier(
        task_id=template.id, node_execution_id=ids.NodeExecutionIdentifier(node_id="n0", execution_id=execution),
    )
    return agent_pb2.TaskExecutionMetadata(task_execution_id=task_execution, namespace="connector-nb")



def remember_secrets(template: tasks_pb2.TaskTemplate, inputs: Mapping[str, Any]) -> None:
    """Remember the values of secret-named inputs and ``custom`` fields, so they are masked wherever they surface."""
    from .secrets import secret_values

    secret_values(inputs)
    secret_values(custom_dict(template))
