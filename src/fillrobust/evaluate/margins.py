"""Margins along subspaces with a batched subspace-constrained DeepFool (thesis 4.2-4.4).

The margin of ``x`` in a subspace S is the l2 norm of the minimal perturbation
``delta in S`` that changes the decision (thesis Def. 1-2). It is approximated
with DeepFool (Moosavi-Dezfooli et al.) whose gradients are projected onto S
before every step, as in the thesis' reference code: top-``num_classes`` classes
of the clean logits, overshoot 0.02, at most 100 iterations, no [0, 1] box
constraint. As in that code, gradients are taken at ``x + r`` and the decision
is checked at ``x + (1 + overshoot) r``; the returned margin is
``||(1 + overshoot) r||`` (the perturbation that actually flips the decision),
``inf`` where the decision did not change within ``max_iter`` iterations.

All images and all subspaces of a call run as one batch: sample ``(s, n)`` is
image ``n`` perturbed in subspace ``s``, each with its own active flag; finished
samples drop out of the batch. Every sample starts at its clean image, so the
first step takes one set of candidate gradients per image, shared by its
subspaces (DeepFool often needs only one or two steps, so this is most of the
work). The candidate gradients come from one forward and one backward pass per
candidate (``replicate=False``, the default: half the time of a pass over
``num_classes - 1`` replicated copies on CPU). Subspace families implement ``project(v, idx)``
(project row ``i`` of ``v`` onto subspace ``idx[i]``); the two made of masked
sets of one orthonormal basis also implement ``MaskedBasisSubspaces``, so each
candidate gradient is transformed once per point and only the chosen one per
sample is transformed back (Parseval gives every projected norm):

- ``DCTSubspaces``: K x K blocks of the 2-D DCT (per channel), projection by
  DCT -> mask -> IDCT, no basis matrix;
- ``RandomBasisSubspaces``: the same blocks in a seeded random orthonormal basis
  of R^{H W} (per channel), projection ``U diag(mask) U^T`` (the thesis' control,
  Fig. 4.4);
- ``ProjectorSubspaces``: explicit projector matrices for flat inputs (synthetic data).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from fillrobust.data.frequency import dct2, idct2


@dataclass(frozen=True)
class MarginParams:
    """Subspace DeepFool settings (thesis 4.2.1 and its reference code)."""

    num_classes: int = 10  # candidate classes: the top-10 of the clean logits (label included)
    overshoot: float = 0.02
    max_iter: int = 100
    step_floor: float = 1e-4  # minimum step length, as DeepFool's clamp(pert, min=1e-4)
    subspace_chunk: int = 0  # subspaces per batch; 0 = all at once
    image_chunk: int = 0  # images per batch; 0 = all at once (a batch is image_chunk x subspace_chunk samples)
    replicate: bool = False  # True: one forward/backward on num_classes-1 copies (more memory; slower on CPU)

    def __post_init__(self) -> None:
        checks = {
            "num_classes": self.num_classes >= 2,
            "overshoot": self.overshoot >= 0,
            "max_iter": self.max_iter >= 1,
            "step_floor": self.step_floor >= 0,
            "subspace_chunk": self.subspace_chunk >= 0,
            "image_chunk": self.image_chunk >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid margin params {bad}: need num_classes >= 2, overshoot >= 0, "
                             f"max_iter >= 1, step_floor >= 0, subspace_chunk >= 0, image_chunk >= 0; "
                             f"got {self}")

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | MarginParams | None) -> MarginParams:
        """Build from a dict (unknown keys raise ValueError) or pass through."""
        if params is None:
            return cls()
        if isinstance(params, MarginParams):
            return params
        valid = set(asdict(cls()))
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(f"unknown margin params {unknown}; valid: {sorted(valid)}")
        return cls(**params)


class Subspaces(Protocol):
    """A family of linear subspaces of the input space."""

    def __len__(self) -> int: ...

    def project(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection of ``v[i]`` onto subspace ``idx[i]``."""
        ...


class MaskedBasisSubspaces(Subspaces, Protocol):
    """Subspaces spanned by masked sets of one orthonormal basis, per channel (DCT, random).

    With the coefficients shared by every subspace, DeepFool gets all candidates'
    projected norms from one transform per gradient (Parseval: the norm of the
    projection is the norm of the masked coefficients) and transforms back only
    the chosen candidate of each sample.
    """

    flat_masks: torch.Tensor  # bool [R, H*W]: basis vectors of each subspace

    def coefficients(self, v: torch.Tensor) -> torch.Tensor:
        """Coefficients [B, C, H*W] of v [B, C, H, W] in the orthonormal basis."""
        ...

    def synthesize(self, coeffs: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Inverse of ``coefficients``: the images [B, C, H, W] (``shape``) of ``coeffs``."""
        ...


def diagonal_blocks(side: int, K: int, T: int) -> torch.Tensor:  # noqa: N803 (thesis names)
    """Boolean masks [R, side, side] of the K x K blocks on the DCT diagonal, stride T.

    Block j covers rows and columns ``j*T .. j*T+K-1``; R = (side - K) // T + 1
    (32/8/2 -> 13, 224/16/16 -> 14). The thesis' formula lists only diagonal
    entries, but its text and Fig. 4.2 (and its code) use full K x K blocks.
    """
    if not (1 <= K <= side and T >= 1):
        raise ValueError(f"need 1 <= K <= side and T >= 1, got side={side}, K={K}, T={T}")
    starts = range(0, side - K + 1, T)
    masks = torch.zeros(len(starts), side, side, dtype=torch.bool)
    for j, s in enumerate(starts):
        masks[j, s : s + K, s : s + K] = True
    return masks


class DCTSubspaces:
    """Subspaces spanned by masked 2-D DCT basis images, identical for every channel."""

    def __init__(self, masks: torch.Tensor) -> None:
        if masks.ndim != 3 or masks.dtype != torch.bool:
            raise ValueError(f"masks must be a bool tensor [R, H, W], got {masks.dtype} "
                             f"{tuple(masks.shape)}")
        self.masks = masks
        self.flat_masks = masks.flatten(1)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def project(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """DCT -> keep the block of subspace idx[i] -> IDCT, for v of shape [B, C, H, W]."""
        mask = self.masks.to(v.device)[idx].unsqueeze(1).to(v.dtype)
        return idct2(dct2(v) * mask)

    def coefficients(self, v: torch.Tensor) -> torch.Tensor:
        """2-D DCT coefficients [B, C, H*W] of v [B, C, H, W]."""
        return dct2(v).flatten(-2)

    def synthesize(self, coeffs: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """IDCT of coefficients [B, C, H*W] back to images of ``shape``."""
        return idct2(coeffs.reshape(shape))


class RandomBasisSubspaces:
    """The same coefficient blocks in a random orthonormal basis U of R^{H W} (per channel).

    Basis vector (i, j) is column ``i * W + j`` of U, drawn Haar-uniform from a
    seeded generator (QR of a Gaussian matrix with sign correction).
    """

    def __init__(self, masks: torch.Tensor, seed: int = 0) -> None:
        if masks.ndim != 3 or masks.dtype != torch.bool:
            raise ValueError(f"masks must be a bool tensor [R, H, W], got {masks.dtype} "
                             f"{tuple(masks.shape)}")
        self.flat_masks = masks.flatten(1)
        dim = self.flat_masks.shape[1]
        self.basis = random_orthonormal(dim, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return int(self.flat_masks.shape[0])

    def project(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """U diag(mask) U^T on the flattened H*W image of every channel."""
        coeffs = self.coefficients(v) * self.flat_masks.to(v.device)[idx].unsqueeze(1).to(v.dtype)
        return self.synthesize(coeffs, v.shape)

    def coefficients(self, v: torch.Tensor) -> torch.Tensor:
        """Coefficients U^T v [B, C, H*W] of every channel of v [B, C, H, W]."""
        return v.flatten(-2) @ self.basis.to(device=v.device, dtype=v.dtype)

    def synthesize(self, coeffs: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """U coeffs back to images of ``shape``."""
        return (coeffs @ self.basis.to(device=coeffs.device, dtype=coeffs.dtype).T).reshape(shape)


class ProjectionOnly:
    """A subspace family seen only through ``project``: DeepFool takes its generic path
    (every candidate projected, then its norm). The reference for the masked-basis path in
    tests and ``bench_margins``."""

    def __init__(self, inner: Subspaces) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def project(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The wrapped family's projection."""
        return self.inner.project(v, idx)


class ProjectorSubspaces:
    """Subspaces of flat inputs R^D given by orthonormal bases (list of [D, k_s])."""

    def __init__(self, bases: Sequence[torch.Tensor]) -> None:
        if not bases:
            raise ValueError("bases must hold at least one [D, k] matrix")
        dims = {b.shape[0] for b in bases}
        if len(dims) != 1 or any(b.ndim != 2 for b in bases):
            raise ValueError(f"all bases must be [D, k] with the same D, got "
                             f"{[tuple(b.shape) for b in bases]}")
        self.projectors = torch.stack([b @ b.T for b in bases])  # [R, D, D]

    def __len__(self) -> int:
        return int(self.projectors.shape[0])

    def project(self, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """P_{idx[i]} v[i] for v of shape [B, D]."""
        proj = self.projectors.to(device=v.device, dtype=v.dtype)[idx]
        return torch.bmm(proj, v.unsqueeze(-1)).squeeze(-1)


def random_orthonormal(dim: int, generator: torch.Generator) -> torch.Tensor:
    """Haar-random orthogonal matrix [dim, dim] (float32) from a CPU generator."""
    gauss = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique, Haar-distributed
    return q.float()


def _flat_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1)


def subspace_deepfool(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    subspaces: Subspaces,
    idx: torch.Tensor,
    params: MarginParams,
    image: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched DeepFool where sample i moves only inside subspace ``idx[i]``.

    ``image`` (optional, [S]): sample i perturbs ``x[image[i]]`` with reference
    class ``y[image[i]]``; without it sample i is ``x[i]``. Samples of one image
    share the clean logits and the candidate gradients of the first step (every
    sample starts at r = 0), so the first step costs one gradient per image, not
    per (image, subspace). Returns ``(perturbation, found)`` per sample:
    perturbation is ``(1 + overshoot) r`` and ``found`` marks samples whose
    decision left the reference class within ``max_iter`` steps. Pass the
    model's prediction as ``y``, or None, for distances to the decision boundary
    (a misclassified sample has margin 0).
    """
    if image is None:
        image = torch.arange(x.shape[0], device=x.device)
    with torch.no_grad():
        logits = model(x)
    if y is None:
        y = logits.argmax(1)
    n_cls = min(params.num_classes, logits.shape[1])
    others = logits.scatter(1, y[:, None], float("-inf")).topk(n_cls - 1, dim=1).indices  # per image
    found = (logits.argmax(1) != y)[image]
    r_tot = torch.zeros((image.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    scale = 1.0 + params.overshoot
    for it in range(params.max_iter):
        active = (~found).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        img = image[active]
        if it == 0:  # all samples sit at their clean image: one gradient per distinct image
            used, rows = torch.unique(img, return_inverse=True)
            gaps, grads = _candidate_grads(model, x[used], y[used], others[used], params.replicate)
        else:
            rows = torch.arange(img.shape[0], device=x.device)
            gaps, grads = _candidate_grads(model, x[img] + r_tot[active], y[img], others[img],
                                           params.replicate)
        r_tot[active] += _projected_step(gaps, grads, subspaces, idx[active], params, rows=rows)
        with torch.no_grad():
            pred = model(x[img] + scale * r_tot[active]).argmax(1)
        found[active] = pred != y[img]
    return scale * r_tot, found


def _candidate_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, others: torch.Tensor, replicate: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaps f_k - f_y [J, B] and their input gradients [J, B, ...] for the J candidates."""
    n_cand, batch = others.shape[1], x.shape[0]
    if replicate:  # one pass on J copies: fewer, larger kernels (pays off on GPUs)
        xr = x.detach().repeat(n_cand, *([1] * (x.ndim - 1))).requires_grad_(True)
        logits = model(xr).view(n_cand, batch, -1)
        rows = torch.arange(batch, device=x.device)
        gaps = logits.gather(2, others.T.unsqueeze(2)).squeeze(2) - logits[:, rows, y]
        (grads,) = torch.autograd.grad(gaps.sum(), xr)
        return gaps.detach(), grads.view(n_cand, *x.shape)
    xg = x.detach().requires_grad_(True)  # one forward, J backward passes through it
    logits = model(xg)
    gaps = logits.gather(1, others) - logits.gather(1, y[:, None])  # [B, J]
    grads = [torch.autograd.grad(gaps[:, j].sum(), xg, retain_graph=j + 1 < n_cand)[0]
             for j in range(n_cand)]
    return gaps.detach().T, torch.stack(grads)


def _projected_step(
    gaps: torch.Tensor, grads: torch.Tensor, subspaces: Subspaces, idx: torch.Tensor,
    params: MarginParams, *, rows: torch.Tensor,
) -> torch.Tensor:
    """DeepFool step towards the closest linearised boundary, inside each sample's subspace.

    ``gaps`` [J, U] and ``grads`` [J, U, ...] belong to U distinct points; sample i
    uses point ``rows[i]`` and subspace ``idx[i]``.
    """
    norms = _masked_basis_norms if hasattr(subspaces, "coefficients") else _projected_norms
    w_norm, pick = norms(grads, subspaces, idx, rows)
    w_norm = w_norm.clamp_min(1e-12)  # [J, S]
    best, arg = (gaps[:, rows].abs() / w_norm).min(dim=0)  # closest linearised boundary per sample
    samples = torch.arange(len(idx), device=gaps.device)
    length = best.clamp_min(params.step_floor) / w_norm[arg, samples]
    return length.view(-1, *([1] * (grads.ndim - 2))) * pick(arg)


#: Projected norms [J, S] of the candidates and a function from each sample's chosen
#: candidate [S] to its projected gradient [S, ...].
_Norms = tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


def _projected_norms(grads: torch.Tensor, subspaces: Subspaces, idx: torch.Tensor,
                     rows: torch.Tensor) -> _Norms:
    """Generic path: project every candidate gradient of every sample, take the norms."""
    n_cand, n_samples = grads.shape[0], len(idx)
    w = subspaces.project(grads[:, rows].flatten(0, 1), idx.repeat(n_cand))
    w = w.view(n_cand, n_samples, *grads.shape[2:])

    def pick(arg: torch.Tensor) -> torch.Tensor:
        return w[arg, torch.arange(n_samples, device=w.device)]

    return w.flatten(2).norm(dim=2), pick


def _masked_basis_norms(grads: torch.Tensor, subspaces: MaskedBasisSubspaces, idx: torch.Tensor,
                        rows: torch.Tensor) -> _Norms:
    """Masked-basis path: one transform per distinct point gives every projected norm
    (Parseval); only each sample's chosen candidate is transformed back."""
    n_cand, n_points, channels = grads.shape[:3]
    coeffs = subspaces.coefficients(grads.flatten(0, 1)).view(n_cand, n_points, channels, -1)
    masks = subspaces.flat_masks.to(device=grads.device, dtype=grads.dtype)  # [R, HW]
    energy = coeffs.square().sum(2) @ masks.T  # [J, U, R]: squared norm inside each subspace
    w_norm = energy[:, rows, idx].clamp_min(0).sqrt()

    def pick(arg: torch.Tensor) -> torch.Tensor:
        chosen = coeffs[arg, rows] * masks[idx].unsqueeze(1)  # [S, C, HW]
        return subspaces.synthesize(chosen, torch.Size((len(idx), *grads.shape[2:])))

    return w_norm, pick


def subspace_margins(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    subspaces: Subspaces,
    params: Mapping[str, Any] | MarginParams | None = None,
) -> torch.Tensor:
    """Margins [R, N]: l2 norm of the minimal perturbation of x[n] inside subspace r.

    ``y`` is the reference class per image (None: the model's prediction, i.e.
    distance to the decision boundary). Entries are ``inf`` where no flip was
    found within ``max_iter``. The model must be in eval mode (samples are
    perturbed independently). Images are processed ``image_chunk`` at a time and
    subspaces ``subspace_chunk`` at a time (0: all together), each pair of chunks
    as one batch: the chunks bound the memory (the thesis' 1,000 ImageNet images
    in 14 subspaces are 14,000 samples at 224 px), not the result.
    """
    p = MarginParams.from_mapping(params)
    if y is not None and y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    n_sub, n = len(subspaces), x.shape[0]
    sub_chunk, img_chunk = p.subspace_chunk or n_sub, p.image_chunk or n
    out = torch.empty(n_sub, n, device=x.device)
    for first in range(0, n, img_chunk):
        images = slice(first, min(first + img_chunk, n))
        xs, ys = x[images], None if y is None else y[images]
        for start in range(0, n_sub, sub_chunk):
            subs = torch.arange(start, min(start + sub_chunk, n_sub), device=x.device)
            idx = subs.repeat_interleave(len(xs))
            image = torch.arange(len(xs), device=x.device).repeat(len(subs))
            pert, found = subspace_deepfool(model, xs, ys, subspaces=subspaces, idx=idx, params=p,
                                            image=image)
            norms = _flat_norm(pert).masked_fill(~found, float("inf"))
            out[subs, images] = norms.view(len(subs), len(xs))
    return out


def margin_summary(
    margins: torch.Tensor | np.ndarray, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-subspace 5th percentile, median and 95th percentile of margins [R, N].

    Percentiles are over the finite margins; ``found`` is their share.
    """
    values = margins.detach().cpu().numpy() if isinstance(margins, torch.Tensor) else margins
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"margins must be [R, N], got shape {values.shape}")
    names = list(names) if names is not None else list(range(values.shape[0]))
    if len(names) != values.shape[0]:
        raise ValueError(f"names must have {values.shape[0]} entries, got {len(names)}")
    rows = []
    for name, row in zip(names, values, strict=True):
        finite = row[np.isfinite(row)]
        p5, p50, p95 = (np.percentile(finite, [5, 50, 95]) if finite.size else (np.nan,) * 3)
        rows.append({"subspace": name, "p5": p5, "median": p50, "p95": p95,
                     "found": finite.size / max(row.size, 1)})
    return pd.DataFrame(rows)
