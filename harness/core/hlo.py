"""What the compiled program really runs per step: ops inside its loops against ops hoisted out of them.

A training program is one `lax.scan`, a while loop in XLA's optimized HLO. Work
that is loop-invariant (a frozen layer applied to a batch that never changes)
is moved out of the loop by XLA and done once per call. Counting matrix
products inside and outside the loop body tells, without a clock, whether a
step still does the work the model asks for.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) \(")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%[\w.\-]+ = .*? ([\w\-]+)\(")
_CALLED = re.compile(r"(?:calls|to_apply|body|condition)=%([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_WHILE_BODY = re.compile(r"body=%([\w.\-]+)")
_WHILE_CONDITION = re.compile(r"condition=%([\w.\-]+)")


def _computations(text: str) -> tuple[dict[str, list[str]], str]:
    """({computation name: its instruction lines}, the entry computation's name)."""
    computations, entry, current = {}, "", None
    for line in text.splitlines():
        match = _COMPUTATION.match(line)
        if match:
            current = match.group(1)
            computations[current] = []
            if line.startswith("ENTRY"):
                entry = current
        elif current is not None and line.strip() == "}":
            current = None
        elif current is not None:
            computations[current].append(line)
    return computations, entry


def _called(line: str) -> list[str]:
    names = _CALLED.findall(line)
    for group in _BRANCHES.findall(line):
        names += [name.strip().lstrip("%") for name in group.split(",")]
    return names


def _inside_and_outside(text: str, weigh) -> tuple[Counter, Counter]:
    """(sum of `weigh(op, line)` over instructions inside while-loop bodies, the same outside them).

    Fusions and calls are followed into the computations they call, so an op inside a fusion
    counts where the fusion runs; nested loops count inside.
    """
    computations, entry = _computations(text)
    counted: dict[tuple[str, bool], Counter] = {}

    def count(name: str, enter_loops: bool) -> Counter:
        """What `name` and what it calls weigh; with enter_loops False, while bodies are not entered."""
        if (name, enter_loops) in counted:
            return counted[name, enter_loops]
        total = Counter()
        for line in computations.get(name, []):
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            total.update(weigh(match.group(1), line))
            if match.group(1) == "while" and not enter_loops:
                for c in _WHILE_CONDITION.findall(line):
                    total.update(count(c, False))
                continue
            for c in _called(line):
                total.update(count(c, enter_loops))
        counted[name, enter_loops] = total
        return total

    outside = count(entry, False)
    inside, seen, stack = Counter(), set(), [entry]  # the bodies of the outermost loops reachable from the entry
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in computations.get(name, []):
            match = _INSTRUCTION.match(line)
            if match and match.group(1) == "while":
                for body in _WHILE_BODY.findall(line):
                    inside.update(count(body, True))
            else:
                stack += _called(line)
    return inside, outside


def loop_ops(text: str, kinds: tuple[str, ...] = ("dot", "convolution")) -> dict[str, int]:
    """Ops of the given kinds inside while-loop bodies and outside them, from optimized HLO text.

    Fusions and calls are followed into the computations they call, so a dot inside a
    fusion counts where the fusion runs. `compiled.as_text()` of a jitted function is
    the input.

    >>> import jax, jax.numpy as jnp
    >>> def fixed_batch(h, x, w):  # tanh(x @ w) does not change from step to step: XLA hoists it
    ...     return jax.lax.scan(lambda h, i: (jnp.tanh(x @ w) @ h, None), h, jnp.arange(3))[0]
    >>> a = jnp.ones((8, 8))
    >>> loop_ops(jax.jit(fixed_batch).lower(a, a, a).compile().as_text())
    {'inside': 1, 'outside': 1}
    """
    inside, outside = _inside_and_outside(text, lambda op, line: {"ops": 1} if op in kinds else {})
    return {"inside": inside["ops"], "outside": outside["ops"]}


# Collectives as XLA names them; an asynchronous pair (`all-reduce-start` ... `all-reduce-done`) counts once, at
# its start. Their bytes: the result's, per device (an all-reduce's input and output are the same size; an
# all-gather's result is the gathered array, a reduce-scatter's the device's share).
COLLECTIVES = ("all-reduce", "reduce-scatter", "all-gather", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_RESULT = re.compile(r"=\s*(.*?)\s[\w\-]+\(")
_ARRAY = re.compile(r"\b([a-z]+\d*(?:e\d+m\d+\w*)?)\[([\d,]*)\]")


def _result_bytes(line: str) -> int:
    """The bytes of an instruction's result (a tuple's parts summed), from its printed shape.

    >>> _result_bytes("%all-reduce.1 = (f32[1]{0}, f32[1,16]{1,0}, f32[]) all-reduce(%a, %b, %c), channel_id=1")
    72
    """
    shape = _RESULT.search(line)
    total = 0
    for dtype, dims in _ARRAY.findall(shape.group(1) if shape else ""):
        size = _DTYPE_BYTES.get(dtype, 1)  # 8-bit floats (f8e4m3fn, ...) are one byte
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size
    return total


def collectives(text: str) -> dict[str, dict[str, dict[str, int]]]:
    """Collectives per step (inside the training loop) and per call (outside it): count and bytes of each kind.

    From optimized HLO text; a program on one device has none (every count 0). The gradient's
    all-reduce of a data-parallel step sits in the loop body: its bytes are what a step sends.

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> x = jax.device_put(jnp.ones((4, 3)), NamedSharding(mesh, P("data")))
    >>> text = jax.jit(lambda x: jax.lax.scan(lambda c, _: (c + x.sum(0), None), jnp.zeros(3), None, 5)[0]
    ...                ).lower(x).compile().as_text()
    >>> collectives(text)["per_step"]["all-reduce"]  # one device: nothing to send
    {'count': 0, 'bytes': 0}
    """
    def weigh(op: str, line: str) -> dict[str, int]:
        kind = op.removesuffix("-start")
        if kind not in COLLECTIVES:
            return {}
        return {f"{kind} count": 1, f"{kind} bytes": _result_bytes(line)}

    inside, outside = _inside_and_outside(text, weigh)
    return {where: {kind: {"count": tally[f"{kind} count"], "bytes": tally[f"{kind} bytes"]} for kind in COLLECTIVES}
            for where, tally in (("per_step", inside), ("per_call", outside))}


_METADATA = re.compile(r",? metadata=\{[^}]*\}")
_NAME = re.compile(r"%?[A-Za-z_][\w\-]*(?:\.\d+)+")


def fingerprint(text: str) -> str | None:
    """A digest of the compiled program itself, from `compiled.as_text()`; None for text it cannot read.

    Source locations (metadata, the file and frame tables) and the numbering of instruction
    names are left out: two freeze methods written differently that XLA compiles to the same
    ops on the same shapes get one fingerprint, so any time between them is noise or drift.
    What the text leaves out cannot tell programs apart: the values of large constants (printed
    `{...}`; a run's data, parameters and hyperparameters are arguments, not constants). The
    module's name (`jit_train`) is kept, so the same ops jitted under another name differ.

    >>> import jax, jax.numpy as jnp
    >>> x = jnp.ones(4)
    >>> a = jax.jit(lambda v: jnp.sin(v) * 2).lower(x).compile().as_text()
    >>> b = jax.jit(lambda v: 2 * jnp.sin(v)).lower(x).compile().as_text()
    >>> c = jax.jit(lambda v: jnp.cos(v) * 2).lower(x).compile().as_text()
    >>> fingerprint(a) == fingerprint(b), fingerprint(a) == fingerprint(c)
    (True, False)
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _COMPUTATION.match(line)), None)
    if start is None:  # not HLO text as this XLA prints it: no digest rather than one of the header alone
        return None
    names: dict[str, str] = {}

    def canonical(match: re.Match) -> str:
        return names.setdefault(match.group(0), f"v{len(names)}")

    body = "\n".join(_NAME.sub(canonical, _METADATA.sub("", line)) for line in [lines[0], *lines[start:]])
    return hashlib.sha256(body.encode()).hexdigest()[:16]
