"""Plugins: the user's own NumPy code for layers whose code is not in the file (a custom class, a Lambda).

A plugin is a Python file the user names (`--plugin my_layers.py`, check-all's `plugins = [...]`) or an
installed package that declares an entry point in the group `lstm_parity.plugins`. Nothing from a model
file is ever executed: a plugin is the user's code, run because the user asked for it.

    from lstm_parity.plugins import layer

    @layer("AttentionLayer")              # the class name in the saved config
    def attention_layer(inputs, weights, config):
        ...                               # NumPy: returns an array or a list of arrays

    @layer("Lambda", name="affine")       # a Lambda is matched by its layer name
    def affine(inputs, weights, config):
        return inputs[0] * 2.0 + 1.0

    keras_objects = {"AttentionLayer": AttentionLayer}   # optional, for the Keras side of `check`

The function gets `inputs` (one array per positional input tensor of the call, batch first, floats in the
reference's dtype, token ids as integers), `weights` (the layer's arrays in the file's order, floats cast to
the reference's dtype) and `config` (a copy of the layer's saved config). Inputs and weights are read-only
(the reference's own arrays, shared with the layers around it): copy one before changing it in place. The
function may be called on a slice of the batch's rows, from several threads at once: keep it a pure function
of its arguments. Its outputs are cast to the reference's dtype and carry no Keras mask. `keras_objects` may
also be a function returning the dict, so that a plugin file need not import Keras unless the Keras side runs.

Limits: a plugin gets no Keras mask and returns none (right for a class that does not declare
`supports_masking`; the commands note it when a mask reaches a plugin-computed layer); a call that passes
tensors as keyword arguments (`layer(x, context=y)`) cannot reach a plugin (exit 3 says so); installed
packages never compute a Lambda nor a class the reference implements (only a file the user names can).

Checks (each failure is one line, exit 3, naming the plugin and the layer): the plugin must not raise; it
must return real numeric arrays, as many as the model takes from the layer, each with the call's batch size
on axis 0; the layers downstream must accept them (within `blame_plugins`, which the commands use, their
failure on a plugin's output is the plugin's); on `check`, the outputs must be as many, and have the
shapes, as Keras computes for that layer (`expecting_shapes`, checked on the real input as it is computed).
The file stores no output shapes that the reader keeps, so without Keras (`predict`) a shape the next layers
accept is not questioned. NaN and Inf are numbers: a plugin may return them, and the comparison with Keras
(or a port) catches them. A plugin file that cannot be loaded is one line and exit 2 naming the file.

The plugins in force are per thread and per context (contextvars): `plugins_in_use` and the CLI's
`--plugin` put them in force for a block or a command and restore what was before; a thread you start sees
none unless it runs in a copy of your context (`contextvars.copy_context().run`). Modules a plugin file
imports from its own folder are its own: dropped from sys.modules after it loads.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import os
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .errors import BadInputError, UnsupportedError, first_line

if TYPE_CHECKING:
    from .reference.layers import Context, LayerFn
    from .spec import LayerSpec, ModelSpec

ENTRY_POINT_GROUP = "lstm_parity.plugins"
AUTOLOAD_OFF = "LSTM_PARITY_DISABLE_PLUGIN_AUTOLOAD"  # "1": installed packages' plugins are not loaded
MARK = "lstm_parity_layers"  # attribute @layer sets on a function: the (class name, layer name) it computes
NAME_MATCHED = ("Lambda",)  # classes whose instances each compute something else: matched by layer name only
README = "README: Custom layers and Lambdas"

PluginFunction = Callable[[list[np.ndarray], list[np.ndarray], dict[str, Any]], Any]
Shape = tuple[int | None, ...]
F = TypeVar("F", bound=Callable[..., Any])

# the functions @layer decorates while a plugin loads (so that a function replaced by a second `def` of the
# same name, or decorated in a loop, is still seen)
_decorating: ContextVar[list[Any] | None] = ContextVar("lstm_parity_decorating", default=None)


def layer(class_name: str, *, name: str | None = None) -> Callable[[F], F]:
    """Decorator: the function computes the layers of class `class_name` (the class name in the saved
    config; a Keras 3 `registered_name` such as "my_package>AttentionLayer" works too), or only the
    layer called `name`. A Lambda must be matched by name. Stack it to register one function twice.
    Raises TypeError for a malformed registration (a load error naming the plugin file)."""
    if not isinstance(class_name, str) or not class_name:
        raise TypeError(f"@layer(class_name): a class name string, got {class_name!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"@layer({class_name!r}, name=...): a layer name string, got {name!r}")
    if class_name in NAME_MATCHED and name is None:
        raise TypeError(f'@layer("{class_name}") needs name="...": each {class_name} computes something else')

    def register(function: F) -> F:
        if not callable(function):
            raise TypeError(f"@layer({class_name!r}) decorates a function, got {type(function).__name__}")
        marks = list(getattr(function, MARK, []))
        function.__dict__[MARK] = [*marks, (class_name, name)]
        log = _decorating.get()
        if log is not None:
            log.append(function)
        return function

    return register


@dataclass(frozen=True)
class PluginLayer:
    """One registration: `function` computes layers of `class_name` (only the one called `name`, if set)."""

    class_name: str
    name: str | None
    function: PluginFunction
    plugin: str  # where it comes from: the file as named, or "entry point N = V (dist D)"
    origin: str = "file"  # "file" | "entry point"

    @property
    def label(self) -> str:
        """How messages name it: 'my_layers.py (attention_layer)'."""
        return f"{self.plugin} ({getattr(self.function, '__name__', 'function')})"

    @property
    def defined_at(self) -> str:
        """'my_layers.py:12', where the function is defined ('' when it has no Python code)."""
        code = getattr(self.function, "__code__", None)
        return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}" if code is not None else ""

    def same_code(self, other: PluginLayer) -> bool:
        """One function, or the same source lines loaded twice (a plugin file another plugin imports)."""
        return self.function is other.function or (_code_key(self.function) or 0) == _code_key(other.function)


def _code_key(function: Any) -> tuple[str, int, str] | None:
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    return os.path.realpath(code.co_filename), code.co_firstlineno, getattr(function, "__qualname__", "")


@dataclass(frozen=True)
class Plugin:
    """One loaded plugin: a file or an entry point, its registrations and its Keras classes."""

    source: str
    origin: str  # "file" | "entry point"
    layers: tuple[PluginLayer, ...]
    keras_objects: Any = None  # a dict, a function returning one, or None
    sha256: str = ""  # of the file's bytes (files only): which code computed the report
    folder: str = ""  # a file's folder: on sys.path while its code imports helpers beside it

    def keras_dict(self) -> dict[str, Any]:
        """`keras_objects` as a dict (calling it when it is a function); raises BadInputError."""
        value = self.keras_objects
        if value is None:
            return {}
        if callable(value) and not isinstance(value, type):
            try:
                with _helpers_beside(self.folder):
                    value = value()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                raise BadInputError(
                    f"{self.source}: keras_objects() raised {_quote(exc)}{_where_in(exc, self.source)}"
                ) from exc
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise BadInputError(f"{self.source}: keras_objects must be a dict of class names to classes")
        return dict(value)


@dataclass(frozen=True)
class PluginUse:
    """For a report: a plugin and the layers of this model it computed (maybe none)."""

    source: str
    origin: str
    layers: tuple[tuple[str, str, str], ...]  # (layer name, class name, function name)
    sha256: str = ""  # of the plugin file ("" for an entry point)


@dataclass(frozen=True)
class PluginSet:
    """Plugins, in order: the files named by the user (or, separately, installed packages' entry points)."""

    plugins: tuple[Plugin, ...] = ()

    def find_layer(self, spec_layer: LayerSpec) -> PluginLayer | None:
        """The registration that computes `spec_layer` (matched by its class name or registered name, and by
        its name or the name in its config): one by name before one by class, then the first plugin's;
        None if none does."""
        registered = spec_layer.registered_name
        classes = {spec_layer.class_name, registered, registered.rpartition(">")[2]} - {""}
        names = {spec_layer.name, str(spec_layer.config.get("name", spec_layer.name)), None}
        found = [
            each
            for plugin in self.plugins
            for each in plugin.layers
            if each.class_name in classes and each.name in names
        ]
        by_name = [each for each in found if each.name is not None]
        return next(iter(by_name or found), None)

    def keras_objects(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        """Every plugin's Keras classes (an earlier plugin wins), also under the `registered_name`s
        (package>Class) that `spec`'s layers carry, for Keras' custom_objects."""
        objects: dict[str, Any] = {}
        for plugin in reversed(self.plugins):
            objects.update(plugin.keras_dict())
        for each in spec.layers if spec is not None else ():
            short = each.registered_name.rpartition(">")[2]
            if each.registered_name and short in objects:
                objects.setdefault(each.registered_name, objects[short])
        return objects


# ---------------------------------------------------------------------------------------------- loading


def load_plugin_file(path: str) -> Plugin:
    """Import the Python file `path` as a module of its own (one name per absolute path) and collect its
    @layer functions and `keras_objects`. Modules it imports from its own folder are its own: they are
    forgotten after the load, so another plugin's helper of the same name is never mixed up with them.
    Raises BadInputError (exit 2) naming the file."""
    if not os.path.isfile(path):
        raise BadInputError(
            f"{path}: " + ("a folder, not a plugin file" if os.path.isdir(path) else "no such plugin file")
        )
    absolute = os.path.abspath(path)
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    module_name = f"lstm_parity_plugin_{hashlib.sha256(absolute.encode()).hexdigest()[:16]}_{stem}"
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, absolute)
        with open(absolute, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except Exception as exc:  # an unreadable file, name or extension
        raise BadInputError(f"{path}: cannot load the plugin ({_quote(exc)})") from exc
    if module_spec is None or module_spec.loader is None:
        raise BadInputError(f"{path}: cannot load the plugin (not a Python file)")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses, pickling and Keras' class lookups need it registered
    decorated: list[Any] = []
    token = _decorating.set(decorated)
    try:
        with _helpers_beside(os.path.dirname(absolute)):
            module_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        if exc.filename and os.path.realpath(exc.filename) == os.path.realpath(absolute):
            raise BadInputError(f"{path}: the plugin does not compile: {exc.msg} (line {exc.lineno})") from exc
        where = f" ({os.path.basename(exc.filename or '?')}:{exc.lineno})"
        raise BadInputError(f"{path}: loading the plugin raised SyntaxError: {exc.msg}{where}") from exc
    except BaseException as exc:  # whatever the user's code raises at import, SystemExit included
        sys.modules.pop(module_name, None)
        raise BadInputError(f"{path}: loading the plugin raised {_quote(exc)}{_where_in(exc, absolute)}") from exc
    finally:
        _decorating.reset(token)
    plugin = _collect(module, path, "file", decorated)
    return Plugin(plugin.source, "file", plugin.layers, plugin.keras_objects, digest, os.path.dirname(absolute))


@contextlib.contextmanager
def _helpers_beside(folder: str) -> Iterator[None]:
    """Within the block, modules in `folder` import (as they would for a script there); afterwards the
    modules imported from `folder` are dropped from sys.modules (the objects themselves live on)."""
    if not folder:
        yield
        return
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        root = os.path.join(os.path.realpath(folder), "")
        for name in set(sys.modules) - before:
            file = getattr(sys.modules.get(name), "__file__", None)
            if isinstance(file, str) and os.path.realpath(file).startswith(root):
                sys.modules.pop(name, None)


def _collect(found: Any, source: str, origin: str, decorated: Sequence[Any] = ()) -> Plugin:
    """The registrations and keras_objects of a loaded module (or of one decorated function): every
    function the module decorated while it loaded (even one a later `def` of the same name replaced), and
    the decorated functions it holds (imported ones too)."""
    if isinstance(found, types.ModuleType):
        own = [each for each in decorated if getattr(each, "__module__", None) == found.__name__]
        candidates = own + list(vars(found).values())
        keras_objects = getattr(found, "keras_objects", None)
    else:
        candidates, keras_objects = [found], None
    seen: set[int] = set()
    layers = []
    for candidate in candidates:
        marks = getattr(candidate, MARK, None) if callable(candidate) else None
        if not isinstance(marks, list) or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        layers += [PluginLayer(class_name, name, candidate, source, origin) for class_name, name in marks]
    if keras_objects is not None and not (isinstance(keras_objects, dict) or callable(keras_objects)):
        raise BadInputError(f"{source}: keras_objects must be a dict of class names to classes (or a function)")
    if not layers and keras_objects is None:
        raise BadInputError(
            f"{source}: the plugin registers no layer (decorate a function with "
            f'@lstm_parity.plugins.layer("ClassName")) and has no keras_objects'
        )
    _refuse_duplicates(layers, source)
    return Plugin(source, origin, tuple(layers), keras_objects)


def _refuse_duplicates(layers: Sequence[PluginLayer], source: str, other: str = "") -> None:
    keys: dict[tuple[str, str | None], PluginLayer] = {}
    for registration in layers:
        key = (registration.class_name, registration.name)
        first = keys.setdefault(key, registration)
        if not first.same_code(registration):
            what = registration.class_name + (f" named {registration.name!r}" if registration.name else "")
            where = f"{first.plugin} and {source}" if other else source
            functions = " and ".join(
                f"{getattr(each.function, '__name__', 'function')} ({each.defined_at or each.plugin})"
                for each in (first, registration)
            )
            raise BadInputError(f"{where}: two functions register {what}: {functions}; keep one")


def load_entry_points() -> tuple[Plugin, ...]:
    """The plugins installed packages declare in the entry-point group `lstm_parity.plugins` (each entry
    point names a module, or one @layer function). Raises BadInputError naming the entry point."""
    import importlib.metadata  # only here: it costs 20 ms at import, and most runs never look

    plugins = []
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(entry, "dist", None)
        owner = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
        source = f"entry point {entry.name} = {entry.value} ({owner})"
        decorated: list[Any] = []
        token = _decorating.set(decorated)
        try:
            found = entry.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise BadInputError(
                f"{source}: loading the plugin raised {_quote(exc)} (every command that meets a class the "
                f"reference lacks loads installed plugins: fix or uninstall it, or set {AUTOLOAD_OFF}=1)"
            ) from exc
        finally:
            _decorating.reset(token)
        plugins.append(_collect(found, source, "entry point", decorated))
    return tuple(plugins)


def load_plugins(paths: Sequence[str]) -> PluginSet:
    """The plugin files `paths` (in order; a file named twice counts once); installed packages' plugins are
    not among them (see installed_plugins). Raises BadInputError naming the file."""
    plugins: list[Plugin] = []
    seen: set[str] = set()
    for path in paths:
        absolute = os.path.realpath(path)
        if absolute in seen:
            continue
        seen.add(absolute)
        plugin = load_plugin_file(path)
        for earlier in plugins:
            _refuse_duplicates([*earlier.layers, *plugin.layers], plugin.source, other=earlier.source)
        plugins.append(plugin)
    return PluginSet(tuple(plugins))


_lock = threading.Lock()
_in_force: ContextVar[PluginSet | None] = ContextVar("lstm_parity_plugins", default=None)  # the files in force
_installed: tuple[Plugin, ...] | None = None  # entry points, loaded once per process on first use


def activate(plugins: PluginSet) -> PluginSet:
    """Make `plugins` the files in force in this thread and context (contextvars) from now on; returns
    the previous set, to restore it (plugins_in_use does both)."""
    previous = files_in_force()
    _in_force.set(plugins)
    return previous


def any_in_force() -> bool:
    """Are plugin files in force in this thread and context? (Cheaper than files_in_force().plugins.)"""
    plugins = _in_force.get()
    return plugins is not None and bool(plugins.plugins)


def files_in_force() -> PluginSet:
    """The plugin files in force in this thread and context."""
    return _in_force.get() or PluginSet()


@contextlib.contextmanager
def plugins_in_use(paths: Sequence[str]) -> Iterator[PluginSet]:
    """Load the plugin files `paths` and put them in force for the block (yielding them), then restore what
    was. Raises BadInputError naming a file that cannot be loaded."""
    plugins = load_plugins(paths)
    previous = activate(plugins)
    try:
        yield plugins
    finally:
        activate(previous)


def plugin_files() -> list[str]:
    """The absolute paths of the plugin files in force (for a child process that must load them too, and
    for the files no command may overwrite)."""
    return [os.path.abspath(plugin.source) for plugin in files_in_force().plugins]


def installed_plugins() -> tuple[Plugin, ...]:
    """Installed packages' plugins: looked up on the first call in this process (unless
    LSTM_PARITY_DISABLE_PLUGIN_AUTOLOAD=1). Raises BadInputError when an entry point fails."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = () if os.environ.get(AUTOLOAD_OFF) == "1" else load_entry_points()
        return _installed


def forget_installed() -> None:
    """Look the entry points up again on next use (after installing a package in this process)."""
    global _installed
    with _lock:
        _installed = None


_builtins: frozenset[str] = frozenset()


def builtin_classes() -> frozenset[str]:
    """The layer classes the reference implements itself."""
    global _builtins
    if not _builtins:
        from .reference.layers import supported_classes

        _builtins = frozenset(supported_classes())
    return _builtins


def registration_for(spec_layer: LayerSpec) -> PluginLayer | None:
    """The plugin that computes `spec_layer`, if any (the one place plugins are matched): a file in force
    first; else, for a class the reference does not implement and that is not a Lambda, an installed
    package's plugin (the entry points are looked up only then). Raises BadInputError when an installed
    plugin fails to load."""
    found = files_in_force().find_layer(spec_layer)
    if found is None and spec_layer.class_name not in builtin_classes() and spec_layer.class_name not in NAME_MATCHED:
        found = PluginSet(installed_plugins()).find_layer(spec_layer)
    return found


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Computed:
    """A layer a plugin computes, in one build of a model (a wrapped layer named `wrapper/inner`, as the
    reference names it), and what happened when it ran."""

    layer: str
    class_name: str
    registration: PluginLayer
    needed: int = 1  # how many outputs the model takes from it (the layers built after it say)
    expected: list[Shape] | None = None  # the output shapes Keras computes for it (check), when known
    ran: bool = False
    masked: bool = False  # a Keras mask reached it (which it does not get)


_builds: dict[int, dict[str, Computed]] = {}  # id(Context) -> the plugin layers built with it, by name
_recording: ContextVar[list[Computed] | None] = ContextVar("lstm_parity_plugin_recording", default=None)
_keras_shapes: ContextVar[dict[str, list[Shape]] | None] = ContextVar("lstm_parity_keras_shapes", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[Computed]]:
    """Collect, in the yielded list, every plugin-computed layer built within the block (in this thread
    and context; an enclosing recording gets them too when the block ends)."""
    outer = _recording.get()
    found: list[Computed] = []
    token = _recording.set(found)
    try:
        yield found
    finally:
        _recording.reset(token)
        if outer is not None:
            outer.extend(found)


@contextlib.contextmanager
def expecting_shapes(shapes: dict[str, list[Shape]]) -> Iterator[None]:
    """Within the block, a plugin-computed layer built under one of the names in `shapes` (Keras' output
    shapes for that layer, batch first, None where free) must return that many outputs of those shapes."""
    token = _keras_shapes.set(dict(shapes))
    try:
        yield
    finally:
        _keras_shapes.reset(token)


def computed_layers(spec: ModelSpec, semantics: str | None = None, dtype: Any = np.float64) -> list[Computed]:
    """The layers of `spec` plugins compute, by building its reference (which also refuses what cannot be
    computed: UnsupportedError / BadInputError, as forward does)."""
    from .reference.forward import build

    with recording() as found:
        build(spec, semantics or spec.semantics, np.dtype(dtype))
    return found


def plugin_uses(computed: Iterable[Computed]) -> tuple[PluginUse, ...]:
    """For a report: each plugin file in force (even one that computed nothing: the user named it), then
    each installed plugin that computed a layer, with the layers it computed (`computed`, from a build)."""
    plugins = {plugin.source: plugin for plugin in files_in_force().plugins}
    rows: dict[str, list[tuple[str, str, str]]] = {source: [] for source in plugins}
    origins = {source: "file" for source in plugins}
    for each in _unique(computed):
        registration = each.registration
        function = getattr(registration.function, "__name__", "function")
        rows.setdefault(registration.plugin, []).append((each.layer, each.class_name, function))
        origins.setdefault(registration.plugin, registration.origin)
    return tuple(
        PluginUse(source, origins[source], tuple(layers), plugins[source].sha256 if source in plugins else "")
        for source, layers in rows.items()
    )


def custom_objects_for(spec: ModelSpec, computed: Iterable[Computed]) -> dict[str, Any]:
    """Keras' custom_objects for `spec`: the classes of the files in force, and of the installed plugins
    that compute one of its layers (`computed`, from a build). Raises BadInputError from keras_objects()."""
    used = {each.registration.plugin for each in computed if each.registration.origin == "entry point"}
    installed = tuple(plugin for plugin in (_installed or ()) if plugin.source in used)
    return PluginSet(files_in_force().plugins + installed).keras_objects(spec)


def plugins_for(spec: ModelSpec) -> PluginSet:
    """The plugins that compute layers of `spec` (the files in force, then the installed plugins its build
    takes), e.g. for `plugins_for(spec).keras_objects(spec)`. Raises what building the reference raises."""
    used = {each.registration.plugin for each in computed_layers(spec)}
    installed = tuple(plugin for plugin in (_installed or ()) if plugin.source in used)
    return PluginSet(files_in_force().plugins + installed)


def uses_entry_points(computed: Iterable[Computed]) -> bool:
    """Whether an installed package's plugin computes one of the layers `computed`."""
    return any(each.registration.origin == "entry point" for each in computed)


def build_plugin_layer(layer: LayerSpec, ctx: Context) -> LayerFn | None:
    """The function computing `layer` with the user's plugin, or None when no plugin claims it.

    Installed packages' plugins are looked up only for a class the reference does not implement, so an
    ordinary model never pays for the lookup. Every layer built with the same `ctx` (forward.build, in file
    order) tells the plugin-computed layers built before it which of their outputs it takes, so a plugin
    that returns too few is refused by name. Raises BadInputError when an installed plugin fails to load,
    UnsupportedError when a call passes tensors as keyword arguments (a plugin gets positional inputs only)."""
    registration = registration_for(layer)
    claims = _builds.get(id(ctx)) or {}
    for node in range(len(layer.inbound)) if claims else ():
        for ref in layer.node_refs(node):
            if ref[0] in claims:
                claims[ref[0]].needed = max(claims[ref[0]].needed, ref[2] + 1)
    if registration is None:
        return None
    keywords = sorted({key for node in layer.node_tensors for key in node})
    if keywords:
        raise UnsupportedError(
            f"{ctx.source}: layer {layer.name!r} ({layer.class_name}): plugin {registration.label} would compute "
            f"it, but the model calls it with tensor keyword arguments {keywords}, and a plugin receives only "
            f"the call's positional inputs ({README})"
        )
    computed = Computed(
        layer.name, layer.class_name, registration, expected=(_keras_shapes.get() or {}).get(layer.name)
    )
    _claims_of(ctx)[layer.name] = computed
    found = _recording.get()
    if found is not None:
        found.append(computed)
    return _plugin_fn(layer, ctx, computed)


def built_with_plugins(ctx: Context) -> bool:
    """Did a plugin compute some layer built with `ctx` (so that build may not be reused)?"""
    return bool(_builds.get(id(ctx)))


def _claims_of(ctx: Context) -> dict[str, Computed]:
    key = id(ctx)
    claims = _builds.get(key)
    if claims is None:
        claims = _builds[key] = {}
        weakref.finalize(ctx, _builds.pop, key, None)
    return claims


def _plugin_fn(layer: LayerSpec, ctx: Context, computed: Computed) -> LayerFn:
    from .reference.layers import LayerResult

    registration = computed.registration
    where = f"{ctx.source}: layer {layer.name!r} ({layer.class_name}): plugin {registration.label}"
    weights = [_read_only(np.array(w, dtype=ctx.dtype if w.dtype.kind == "f" else w.dtype)) for w in layer.weights]

    def run(args: list[np.ndarray], masks: list[Any]) -> LayerResult:
        computed.ran = True
        if any(mask is not None for mask in masks):
            computed.masked = True
        inputs = [_read_only(np.asarray(x).view()) for x in args]  # views: the caller's arrays stay writable
        try:
            raw = registration.function(inputs, list(weights), copy.deepcopy(layer.config))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # whatever the user's code raises, SystemExit included
            raise UnsupportedError(
                f"{where} raised {_quote(exc)}{_where_in(exc, registration.function)}{_write_hint(exc)}"
            ) from exc
        batch = int(np.shape(args[0])[0]) if args and np.ndim(args[0]) else None
        outputs = _outputs(raw, where, batch, computed.needed, ctx.dtype)
        if computed.expected is not None:
            _against_keras(outputs, computed.expected, where)
        return LayerResult(outputs=outputs, masks=[None] * len(outputs))  # a plugin's outputs carry no mask

    return run


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _outputs(raw: Any, where: str, batch: int | None, needed: int, dtype: np.dtype) -> list[np.ndarray]:
    """The plugin's return value as a list of arrays in `dtype` (never one of its read-only arguments: a
    copy then), or UnsupportedError saying what is wrong."""
    items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not items:
        raise UnsupportedError(f"{where} returned an empty list; return an array or a list of arrays")
    outputs = []
    for index, item in enumerate(items):
        what = f"output {index}" if len(items) > 1 else "its output"
        if item is None or isinstance(item, (dict, str, bytes)):
            raise UnsupportedError(f"{where}: {what} is {type(item).__name__}, not an array")
        try:
            array = np.asarray(item)
        except Exception as exc:
            raise UnsupportedError(f"{where}: {what} is not an array ({_quote(exc)})") from exc
        if array.dtype.kind not in "biuf":
            raise UnsupportedError(f"{where}: {what} has dtype {array.dtype}; return real numbers")
        if batch is not None and (array.ndim == 0 or array.shape[0] != batch):
            raise UnsupportedError(
                f"{where}: {what} has shape {array.shape}; its axis 0 must be the batch ({batch} rows, "
                f"as in the layer's input)"
            )
        array = array.astype(dtype, copy=False)
        outputs.append(array if array.flags.writeable else array.copy())
    if len(outputs) < needed:
        raise UnsupportedError(
            f"{where} returned {len(outputs)} array(s); the model takes output {needed - 1} of this layer"
        )
    return outputs


def _against_keras(outputs: list[np.ndarray], expected: list[Shape], where: str) -> None:
    """The outputs must be as many as Keras computes for the layer, with its rank and sizes (None is any
    size; the batch axis is not compared)."""
    if len(outputs) != len(expected):
        raise UnsupportedError(
            f"{where} returned {len(outputs)} array(s); Keras computes {len(expected)} output(s) for this layer"
        )
    for index, (array, shape) in enumerate(zip(outputs, expected, strict=True)):
        sizes = zip(shape[1:], array.shape[1:], strict=False)
        if array.ndim != len(shape) or any(k is not None and k != a for k, a in sizes):
            keras_text = "(" + ", ".join("None" if k is None else str(k) for k in shape) + ")"
            raise UnsupportedError(
                f"{where}: output {index} has shape {array.shape}; Keras computes {keras_text} for this layer"
            )


def _quote(exc: BaseException) -> str:
    """'ValueError: message', or 'RuntimeError (no message)'."""
    text = first_line(exc)
    return text[:-2] + " (no message)" if text.endswith(": ") else text


def _where_in(exc: BaseException, owner: Any) -> str:
    """' (at my_layers.py:12)': the innermost frame of the traceback in the plugin's own file (`owner`:
    the file's path, or a function defined in it); '' when no frame is there."""
    code = getattr(owner, "__code__", None)
    target = code.co_filename if code is not None else owner if isinstance(owner, str) else ""
    if not target:
        return ""
    target = os.path.realpath(target)
    found = ""
    frame = exc.__traceback__
    while frame is not None:
        if os.path.realpath(frame.tb_frame.f_code.co_filename) == target:
            found = f" (at {os.path.basename(target)}:{frame.tb_lineno})"
        frame = frame.tb_next
    return found


def _write_hint(exc: BaseException) -> str:
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        return "; inputs and weights are read-only: copy one (x = x.copy()) before changing it in place"
    return ""


@contextlib.contextmanager
def blame_plugins(spec: ModelSpec) -> Iterator[list[Computed]]:
    """Within the block, a layer that cannot take the output of a plugin-computed layer is that plugin's
    failure: its BadInputError (exit 2: input shape does not fit) becomes UnsupportedError (exit 3) naming
    the plugin, the layer it computed and the layer that could not take it; so does a model output the
    plugin did not return. Only once that plugin has run: a failure before that (reading, building) is not
    the plugin's. Yields the plugin-computed layers built within the block (see plugin_notes)."""
    with recording() as computed:
        try:
            yield computed
        except BadInputError as exc:
            blamed = _downstream(spec, exc.message, computed)
            if blamed is None:
                raise
            raise UnsupportedError(blamed) from exc


def _downstream(spec: ModelSpec, message: str, computed: list[Computed]) -> str | None:
    """The plugin-blaming message for `message`, a layer's own error (it starts as every layer error does,
    'FILE: layer NAME (CLASS)') when that layer takes a plugin-computed layer's output, or the forward's
    'model output REF is never computed' for a plugin's output; else None."""
    ran = {each.layer: each for each in computed if each.ran}
    for ref in spec.outputs:
        if ref[0] in ran and message == f"{spec.source}: model output {ref} is never computed":
            each = ran[ref[0]]
            return (
                f"{spec.source}: layer {each.layer!r} ({each.class_name}): plugin {each.registration.label} "
                f"returned too few arrays; the model's output is output {ref[2]} of this layer"
            )
    for consumer in spec.layers:
        if not message.startswith(f"{spec.source}: layer {consumer.name!r} ("):
            continue
        for node in range(len(consumer.inbound)):
            for ref in consumer.node_refs(node):
                if ref[0] in ran:
                    each = ran[ref[0]]
                    return (
                        f"{spec.source}: plugin {each.registration.label} computed layer {each.layer!r} "
                        f"({each.class_name}) an output the next layer cannot take: "
                        f"{message[len(spec.source) + 2 :]}"
                    )
    return None


def _unique(computed: Iterable[Computed]) -> list[Computed]:
    """One entry per layer name (a model is built once per batch or chunk), flags merged."""
    merged: dict[str, Computed] = {}
    for each in computed:
        first = merged.setdefault(each.layer, copy.copy(each))
        first.ran, first.masked = first.ran or each.ran, first.masked or each.masked
    return list(merged.values())


def plugin_notes(computed: Iterable[Computed], installed: bool = True) -> list[str]:
    """Notes for a command's output (stderr for predict/trace/vectors, the report's notes for check): the
    layers an installed package's plugin computed (unless `installed` is False: a report lists them), and
    the plugin-computed layers a Keras mask reached."""
    notes = []
    for each in _unique(computed):
        label = each.registration.label
        if installed and each.registration.origin == "entry point":
            notes.append(f"layer {each.layer!r} ({each.class_name}) was computed by an installed plugin: {label}")
        if each.masked:
            notes.append(
                f"a Keras mask reaches layer {each.layer!r} ({each.class_name}); plugin {label} gets no mask and "
                f"passes none on (as Keras does for a class without supports_masking; {README})"
            )
    return notes
