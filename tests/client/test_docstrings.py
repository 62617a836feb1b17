"""Every public class, method and function of the client library has a
docstring (``help(client)`` is the manual of a harness author), and the
package docstring shows how to connect."""

from __future__ import annotations

import importlib
import inspect
from typing import List

from rvkvm import client

MODULES = ["rvkvm.client.kvm", "rvkvm.client.vmm", "rvkvm.client.exits",
           "rvkvm.client.devices", "rvkvm.client.errors", "rvkvm.client.fdt"]


def has_doc(obj: object, name: str) -> bool:
    doc = inspect.getdoc(obj)
    # a dataclass without a docstring gets its signature as __doc__
    return doc is not None and doc != "" and not doc.startswith(f"{name}(")


def undocumented() -> List[str]:
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        if not has_doc(module, module_name):
            missing.append(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
                continue
            if inspect.isfunction(obj):
                if not has_doc(obj, name):
                    missing.append(f"{module_name}.{name}")
            elif inspect.isclass(obj):
                if not (obj.__dict__.get("__doc__") and has_doc(obj, name)):
                    missing.append(f"{module_name}.{name}")
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    func = member.__func__ if isinstance(member, (classmethod, staticmethod)) \
                        else member.fget if isinstance(member, property) else member
                    if inspect.isfunction(func) and not func.__doc__:
                        missing.append(f"{module_name}.{name}.{attr}")
    return missing


def test_every_public_name_has_a_docstring():
    assert undocumented() == []


def test_help_shows_how_to_connect():
    doc = client.__doc__ or ""
    assert "Kvm.connect(" in doc and "Kvm.connect_async(" in doc
    assert inspect.getdoc(client.Kvm.connect)
