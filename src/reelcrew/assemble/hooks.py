"""The user's edit function: `package.module:function`, imported from the Python path and checked up front.

It is imported in the pre-flight, before anything is paid for, so a typo costs nothing: a missing
module or function is a ConfigError (exit 2). The current folder is on the path, as for `python -m`,
so a project's own `edits/title.py` is found as `edits.title:function` from the project folder.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from reelcrew.errors import ConfigError

FIX = "set render.edit (or --edit) to package.module:function, importable from the current folder or the Python path"


def load_edit(spec: str | None) -> Callable[[Any, dict], Any] | None:
    """The edit function named by `spec`, or None when there is none; ConfigError when it cannot be used."""
    if not spec:
        return None
    module_name, sep, function_name = spec.strip().partition(":")
    if not sep or not module_name or not function_name:
        raise ConfigError(f"edit function {spec!r} is not of the form package.module:function", FIX)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"edit function {spec!r}: module {exc.name!r} not found", FIX) from None
    except Exception as exc:  # the module itself raised while importing
        raise ConfigError(f"edit function {spec!r}: importing {module_name} raised {type(exc).__name__}: {exc}",
                          f"fix {module_name}") from None
    target: Any = module
    for part in function_name.split("."):
        target = getattr(target, part, None)
    if target is None or not callable(target):
        raise ConfigError(f"edit function {spec!r}: {module_name} has no function {function_name!r}", FIX)
    try:
        inspect.signature(target).bind(None, None)
    except TypeError:
        raise ConfigError(f"edit function {spec!r} cannot be called as {function_name}(composition, data)",
                          "give it two parameters: the composition and the data dict") from None
    except ValueError:
        pass  # builtins without a signature: trust them
    return target
