"""Safe persistence: :func:`save` and :func:`load` store parameters and weights only.

A file is a ``torch.save`` archive of plain data: tensors, numbers, strings, lists and dicts.
Every object is described by a tagged dict (``{"kind": ..., ...}``) and rebuilt on loading
from explicit allow-lists of skcds classes looked up by name; nothing is imported by path
and :func:`torch.load` runs with ``weights_only=True``, so a file carrying a pickled payload
is refused before anything in it runs.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings

import numpy as np
import torch

from ._core import networks, reference
from ._core.training import EMA
from ._version import __version__, is_compatible
from .energies._precondition import Preconditioning
from .exceptions import IncompatibleModelError

__all__ = ["load", "save"]

_FORMAT = "skcds-model"
_FORMAT_VERSION = 1


def _estimators() -> dict:
    from . import (
        BayesianLogisticRegression,
        ConsistentDistiller,
        DiffusionSampler,
        SelfConsistentSampler,
    )

    classes = (BayesianLogisticRegression, ConsistentDistiller, DiffusionSampler)
    return {cls.__name__: cls for cls in (*classes, SelfConsistentSampler)}


def _energies() -> dict:
    from . import energies

    names = ("Funnel", "GaussianMixture", "LGCP", "LogisticRegressionPosterior", "ManyWell")
    families = ("TemperedManyWell", "BayesianLinearRegression")
    more = ("FabManyWell", "AffineTransformed", *families)
    return {name: getattr(energies, name) for name in (*names, *more)}


_NETWORKS = {
    cls.__name__: cls for cls in (networks.ControlNet, networks.ConsistencyNet, networks.FlowNet)
}
_REFERENCES = {cls.__name__: cls for cls in reference.REFERENCES.values()}


# ---------------------------------------------------------------- encoding
def _encode(value):
    """Plain data for ``value`` (recursively); raises ``TypeError`` for what cannot be stored."""
    from .energies import Energy

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return {"kind": type(value).__name__, "items": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"kind": "dict", "items": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return {"kind": "ndarray", "data": torch.from_numpy(np.ascontiguousarray(value))}
        return {"kind": "ndarray_list", "data": _encode(value.tolist()), "dtype": value.dtype.str}
    if isinstance(value, (torch.device, torch.dtype)):
        return {"kind": type(value).__name__, "value": str(value)}
    if isinstance(value, Energy):
        return _encode_energy(value)
    if type(value).__name__ in _NETWORKS and type(value) is _NETWORKS[type(value).__name__]:
        state = {k: v.detach().cpu() for k, v in value.state_dict().items()}
        config = _encode(value.config())
        return {"kind": "network", "class": type(value).__name__, "config": config, "state": state}
    if isinstance(value, EMA):
        return {"kind": "ema", "module": _encode(value.module), "cap": value.cap,
                "n_updates": value.n_updates}  # fmt: skip
    if type(value).__name__ in _REFERENCES:
        return {"kind": "reference", "class": type(value).__name__, "vars": _encode(vars(value))}
    if type(value).__name__ in _estimators():
        return _encode_estimator(value)
    if isinstance(value, Preconditioning):
        return {"kind": "preconditioning", "fields": _encode(dataclasses.asdict(value))}
    raise TypeError(
        f"skcds.save cannot store a {type(value).__name__} (only skcds estimators, their "
        "built-in energies, numbers, strings, arrays and tensors); use joblib for such models."
    )


def _encode_energy(energy) -> dict:
    name = type(energy).__name__
    if name not in _energies() or type(energy) is not _energies()[name]:
        # a user's function cannot be stored as data: the loader must be given the energy
        return {"kind": "energy", "class": None, "repr": repr(energy)}
    return {"kind": "energy", "class": name, "params": _encode(energy.get_params())}


def _encode_estimator(estimator, *, drop_callbacks: bool = False) -> dict:
    params = estimator.get_params(deep=False)
    if drop_callbacks and "callbacks" in params:
        params["callbacks"] = None
    if params.get("callbacks"):
        raise TypeError("skcds.save cannot store 'callbacks' (code); set callbacks=None first.")
    state = estimator.__getstate__()  # every skcds estimator's carries the skcds version
    state = {k: v for k, v in state.items() if k not in params}
    return {
        "kind": "estimator",
        "class": type(estimator).__name__,
        "params": _encode(params),
        "state": _encode(state),
    }


def save(estimator, path) -> None:
    """Store an skcds estimator's parameters and weights, and no code.

    Unlike a pickle (joblib), the file holds plain data only, and :func:`load` rebuilds the
    estimator from allow-listed skcds classes, so loading a file never runs code from it.
    Fitted and unfitted estimators, nested ones (a distiller's teacher, a classifier's
    sampler) and built-in energies are stored; a user-defined energy (a Python function)
    cannot be, and is given back to :func:`load` instead. The file is written under a
    temporary name and then renamed, so an interrupted save never truncates an earlier file.

    Parameters
    ----------
    estimator : skcds estimator
        :class:`~skcds.DiffusionSampler`, :class:`~skcds.SelfConsistentSampler`,
        :class:`~skcds.ConsistentDistiller` or :class:`~skcds.BayesianLogisticRegression`.
    path : str or path-like
        Destination file.

    Raises
    ------
    TypeError
        If the estimator is not an skcds estimator, or holds something that is not data
        (``callbacks``).

    Examples
    --------
    >>> import os, tempfile
    >>> import skcds
    >>> from skcds.energies import GaussianMixture
    >>> sampler = skcds.DiffusionSampler(n_steps=4, max_iter=2, batch_size=8, random_state=0)
    >>> sampler = sampler.fit(GaussianMixture.grid())
    >>> path = os.path.join(tempfile.mkdtemp(), "sampler.skcds")
    >>> skcds.save(sampler, path)
    >>> skcds.load(path).sample(2, random_state=0).shape
    (2, 2)
    """
    write_model(estimator, path)


def write_model(estimator, path, *, drop_callbacks: bool = False) -> None:
    """:func:`save`, optionally storing ``callbacks=None`` in place of the callbacks (for
    checkpoints written by a callback). The file is written beside ``path`` and renamed
    over it, so an interrupted write never leaves a truncated model at ``path``."""
    if type(estimator).__name__ not in _estimators():
        raise TypeError(
            f"skcds.save stores skcds estimators ({sorted(_estimators())}); got "
            f"{type(estimator).__name__}. Use joblib for other objects."
        )
    payload = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "skcds_version": __version__,
        "estimator": _encode_estimator(estimator, drop_callbacks=drop_callbacks),
    }
    path = os.fspath(path)
    partial = f"{path}.partial"
    try:
        torch.save(payload, partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


# ---------------------------------------------------------------- decoding
class _Decoder:
    def __init__(self, energy) -> None:
        self.energy = energy

    def __call__(self, value):
        if not isinstance(value, dict):
            return value
        kind = value.get("kind")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            raise IncompatibleModelError(f"Unknown entry of kind {kind!r} in the model file.")
        return method(value)

    def _list(self, value):
        return [self(v) for v in value["items"]]

    def _tuple(self, value):
        return tuple(self(v) for v in value["items"])

    def _dict(self, value):
        return {self(k): self(v) for k, v in value["items"]}

    def _ndarray(self, value):
        return value["data"].numpy()

    def _ndarray_list(self, value):
        return np.array(self(value["data"]), dtype=np.dtype(value["dtype"]))

    def _device(self, value):
        return torch.device(value["value"])

    def _dtype(self, value):
        return getattr(torch, value["value"].removeprefix("torch."))

    def _energy(self, value):
        if value["class"] is None:
            if self.energy is None:
                raise ValueError(
                    f"This model was fitted on a user-defined energy ({value['repr']}), which "
                    "a model file cannot hold as data: pass it as skcds.load(path, energy=...)."
                )
            return copy.deepcopy(self.energy)
        return _lookup(_energies(), value["class"], "energy")(**self(value["params"]))

    def _network(self, value):
        net = _lookup(_NETWORKS, value["class"], "network")(**self(value["config"]))
        floating = [t.dtype for t in value["state"].values() if t.is_floating_point()]
        if floating:  # built in torch's default dtype: a float64 model must not round
            net.to(dtype=floating[0])
        net.load_state_dict(value["state"])
        return net

    def _ema(self, value):
        ema = EMA.__new__(EMA)
        ema.module, ema.cap, ema.n_updates = self(value["module"]), value["cap"], value["n_updates"]
        return ema

    def _preconditioning(self, value):
        return Preconditioning(**self(value["fields"]))

    def _reference(self, value):
        return _lookup(_REFERENCES, value["class"], "reference process")(**self(value["vars"]))

    def _estimator(self, value):
        cls = _lookup(_estimators(), value["class"], "estimator")
        legacy = getattr(cls, "_defaults_before_added", {})  # not every estimator is a sampler
        estimator = cls(**{**legacy, **self(value["params"])})
        state = self(value["state"])
        if "energy_" in state and "_dtype" in state:  # a rebuilt energy in the model's dtype
            state["energy_"] = state["energy_"].to(dtype=state["_dtype"])
        estimator.__setstate__({**vars(estimator), **state})  # checks the saved version
        return estimator


def _lookup(table: dict, name, what: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise IncompatibleModelError(
            f"The model file names the {what} {name!r}, which is not one skcds can rebuild."
        ) from None


def load(path, *, energy=None):
    """Load an estimator stored by :func:`save`, without running code from the file.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    energy : Energy, optional
        The energy of a model fitted on a user-defined energy (which the file cannot hold);
        built-in energies are rebuilt from the file.

    Returns
    -------
    estimator
        On the CPU when the model was saved from a GPU and none is available.

    Raises
    ------
    IncompatibleModelError
        If the file is not an skcds model file (a pickle, a corrupt or truncated file, a
        foreign archive), or was written by an incompatible skcds version.
    ValueError
        If the model needs a user-defined ``energy`` that was not given.
    """
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: ours is clearer
            warnings.simplefilter("ignore")
            payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # any failure of the restricted unpickler means: not ours
        raise IncompatibleModelError(
            f"{os.fspath(path)!r} is not a loadable skcds model file: it is corrupt, truncated "
            "or not written by skcds.save, or it holds objects other than data (a pickle "
            f"with code is refused, never run). Details: {type(error).__name__}: "
            f"{(str(error).splitlines() or [''])[0]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise IncompatibleModelError(
            f"{os.fspath(path)!r} is not an skcds model file (no {_FORMAT!r} header)."
        )
    saved = str(payload.get("skcds_version"))
    if payload.get("format_version") != _FORMAT_VERSION or not is_compatible(saved):
        raise IncompatibleModelError(
            f"{os.fspath(path)!r} was saved by skcds {saved} (file format "
            f"{payload.get('format_version')}); skcds {__version__} cannot load it."
        )
    return _Decoder(energy)(payload["estimator"])
