"""YAML with limits: a small document whose aliases expand to billions of values ("billion laughs") is
refused before anything walks it.

pyyaml builds one node per anchor and shares it between aliases, so composing a bomb is cheap; the harm
comes later, from code that walks the values as a tree (str(), pydantic, dumping). So a document is
measured as the tree it stands for (every alias counted as a full copy, memoised per node, so the count
itself is linear) and refused above a budget, as is a recursive alias and an oversized text.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_YAML_BYTES = 1024 * 1024  # a spec is a few KiB; a lock a few hundred
MAX_NODES = 100_000  # values in the document with every alias expanded


class YamlTooBig(ValueError):
    """The document is over a limit: its message says which, for a person to read."""


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def check_node_budget(root: Node | None, max_nodes: int = MAX_NODES) -> None:
    """Refuse a node graph whose expanded tree holds more than `max_nodes` values, or that is recursive."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > max_nodes:
                raise YamlTooBig(f"its aliases expand to more than {max_nodes} values (a YAML alias bomb?)")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlTooBig("an alias refers to a value that contains it (a recursive alias)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def check_text_size(text: str, max_bytes: int = MAX_YAML_BYTES) -> None:
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise YamlTooBig(f"it is over {max_bytes // 1024} KiB")


def load_limited(text: str, *, max_nodes: int = MAX_NODES, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """yaml.safe_load (libyaml's when present), refusing oversized documents with YamlTooBig.

    yaml.YAMLError is raised as usual for text that is not YAML."""
    check_text_size(text, max_bytes)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        check_node_budget(root, max_nodes)
        return None if root is None else loader.construct_document(root)
    except RecursionError:
        raise YamlTooBig("it is nested too deeply") from None
    finally:
        loader.dispose()


def item_position(text: str, key: str, index: int) -> tuple[int, int] | None:
    """1-based (line, column) of item `index` of the list under top-level `key`; None when there is none."""
    loader = yaml.SafeLoader(text)
    try:
        check_text_size(text)
        root = loader.get_single_node()
        check_node_budget(root)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None
    finally:
        loader.dispose()
    if not isinstance(root, MappingNode):
        return None
    for name, value in root.value:
        found = isinstance(name, ScalarNode) and name.value == key and isinstance(value, SequenceNode)
        if found and 0 <= index < len(value.value):
            mark = value.value[index].start_mark
            return mark.line + 1, mark.column + 1
    return None


def odd_scalars(root: Node | None) -> list[tuple[str, Node, str]]:
    """(dotted path, node, why) of each value or key whose text no file, store or engine takes: a lone
    surrogate or a NUL, which YAML's escapes ("\\ud800", "\\0") can write in plain ASCII."""
    found: list[tuple[str, Node, str]] = []
    seen: set[int] = set()
    stack: list[tuple[Node, str]] = [(root, "")] if root is not None else []
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if "\x00" in node.value:
                found.append((path, node, "holds a NUL character"))
            elif any("\ud800" <= char <= "\udfff" for char in node.value):
                found.append((path, node, "holds a lone surrogate (\\ud800-\\udfff), which is not text"))
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else "?"
                child = f"{path}.{name}" if path else name
                stack += [(key, child), (value, child)]
        elif isinstance(node, SequenceNode):
            stack += [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
    return found
