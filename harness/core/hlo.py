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
    computations, entry = _computations(text)
    counted: dict[tuple[str, bool], int] = {}

    def count(name: str, enter_loops: bool) -> int:
        """Ops in `name` and what it calls; with enter_loops False, while bodies are not entered."""
        if (name, enter_loops) in counted:
            return counted[name, enter_loops]
        total = 0
        for line in computations.get(name, []):
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            if match.group(1) in kinds:
                total += 1
            if match.group(1) == "while" and not enter_loops:
                total += sum(count(c, False) for c in _WHILE_CONDITION.findall(line))
                continue
            total += sum(count(c, enter_loops) for c in _called(line))
        counted[name, enter_loops] = total
        return total

    outside = count(entry, False)
    inside = _inside_loops(computations, entry, count)
    return {"inside": inside, "outside": outside}


def _inside_loops(computations: dict[str, list[str]], entry: str, count) -> int:
    """Ops in the bodies of the outermost while loops reachable from the entry (nested loops included)."""
    seen, stack, total = set(), [entry], 0
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in computations.get(name, []):
            match = _INSTRUCTION.match(line)
            if match and match.group(1) == "while":
                total += sum(count(body, True) for body in _WHILE_BODY.findall(line))
            else:
                stack += _called(line)
    return total



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
