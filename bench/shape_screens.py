"""Short pre-training screens for the shape-collapse investigation (docs/shape-collapse.md).

Each run pre-trains the ``default`` preset (fast layers, fused AdamW, the preset's schedule) for
``--steps`` on one dataset's training split, with the remedies named by the options, then measures
the shape tokens on the test split (``token_metrics_on`` + distinct shapes) and appends one JSON
line to ``--out``. It is the record of the screens in docs/shape-collapse.md and keeps its own
implementation of each remedy as screened (a window damping of 0.01, its own k-means and
restart); the ones that worked are vqfast's options (``shape_source="window"``,
``max_shape_len``, ``vqfast.training.codebook``), which ``train.py --set`` turns on.

    python bench/shape_screens.py --dataset GunPoint --steps 400 --norm-shape 1 --tag norm
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqfast import VQShape  # noqa: E402
from vqfast.data import load_dataset  # noqa: E402
from vqfast.evaluation.tokens import token_metrics_on  # noqa: E402
from vqfast.explain import distinct_codes  # noqa: E402
from vqfast.training import lr_scheduler  # noqa: E402
from vqfast.training.optim import make_optimizer  # noqa: E402
from vqfast.training.presets import apply_overrides, get_preset  # noqa: E402


def zscore_rows(s, std, mean, eps=1e-2):
    """Subsequences in units of their series (``mean``, ``std``), then z-scored per row with
    ``eps`` (series-variance units) so near-flat windows are not blown up."""
    s = (s - mean.unsqueeze(1)) / std.unsqueeze(1)
    m = s.mean(-1, keepdim=True)
    return (s - m) / (s.var(-1, keepdim=True) + eps).sqrt()


@torch.no_grad()
def kmeans(x, k, iters=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = x[torch.randperm(x.shape[0], generator=g)[:k]].clone()
    for _ in range(iters):
        idx = torch.cdist(x, c).argmin(1)
        for j in range(k):
            members = x[idx == j]
            c[j] = members.mean(0) if len(members) else x[torch.randint(len(x), (1,), generator=g)]
    return c


class ScreenModel(VQShape):
    """VQShape with the screens' architectural variants: ``z_from_window`` (z_e encoded from the
    z-scored subsequence the token's window covers, instead of from the token embedding) and
    ``stats_from_window`` (mu and sigma measured on that subsequence instead of predicted)."""

    z_from_window = False
    stats_from_window = False

    def _from_tokens(self, h, x, stats, *, compute_loss, return_latents=False, text=None):
        if not (self.z_from_window or self.stats_from_window):
            return super()._from_tokens(h, x, stats, compute_loss=compute_loss,
                                        return_latents=return_latents, text=text)
        import torch.nn as nn

        from vqfast import ops
        from vqfast.model.config import MIN_SHAPE_LEN
        from vqfast.model.functional import disentanglement_loss
        mean, std = stats
        z_e, tl, mu_hat, sigma_hat = self.decode_attributes(h, text)
        t_hat = tl[..., [0]] * (1 - MIN_SHAPE_LEN)
        span = 1 - t_hat
        if self.config["max_shape_len"] is not None:
            span = span.clamp(max=self.config["max_shape_len"] - MIN_SHAPE_LEN)
        l_hat = tl[..., [1]] * span + MIN_SHAPE_LEN
        s = ops.extract_subsequence(x.float(), t_hat.float(), l_hat.float(), self.config["len_s"],
                                    self.config["s_smooth_factor"], backend=self.backend)
        s_n = (s - mean.unsqueeze(1)) / std.unsqueeze(1)
        m, v = s_n.mean(-1, keepdim=True), s_n.var(-1, keepdim=True)
        if self.z_from_window:
            z_e = self.window_encoder(((s_n - m) / (v + 1e-2).sqrt()).detach())
        if self.stats_from_window:
            mu_hat, sigma_hat = m.detach(), v.sqrt().detach()
        z_q, z_idx, z_loss = self.codebook(z_e, compute_loss=compute_loss)
        h_hat = self.attr_encoder(z_q, t_hat, l_hat, mu_hat, sigma_hat)
        x_hat = self.decoder(h_hat) * std + mean
        s_hat = self.shape_decoder(z_q) * sigma_hat + mu_hat
        s_hat = s_hat * std.unsqueeze(1) + mean.unsqueeze(1)
        outputs = {"x_true": x, "x_pred": x_hat, "s_true": s, "s_pred": s_hat, "code": z_q,
                   "code_idx": z_idx, "t_pred": t_hat, "l_pred": l_hat, "mu_pred": mu_hat,
                   "sigma_pred": sigma_hat, "z_e": z_e}
        if not compute_loss:
            return outputs
        x_loss = nn.functional.mse_loss(x_hat, x)
        s_loss = nn.functional.mse_loss(s_hat, s.detach())
        dist = disentanglement_loss(t_hat, l_hat, MIN_SHAPE_LEN)
        return outputs, {"ts_loss": x_loss.unsqueeze(0), "vq_loss": z_loss.unsqueeze(0),
                         "shape_loss": s_loss.unsqueeze(0), "dist_loss": dist.unsqueeze(0)}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="BasicMotions")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--norm-shape", type=float, default=0.0,
                   help="weight of mse(shape(z_q), zscore(s_true)) (straight-through to z_e)")
    p.add_argument("--norm-shape-ze", type=float, default=0.0,
                   help="weight of the same on the continuous z_e")
    p.add_argument("--kmeans-at", type=int, default=0, help="k-means codebook init at this step")
    p.add_argument("--restart-every", type=int, default=0, help="dead-code restart period")
    p.add_argument("--decoder-lr", type=float, default=1.0, help="lr multiplier, shape decoder")
    p.add_argument("--codebook-lr", type=float, default=1.0, help="lr multiplier, codebook")
    p.add_argument("--z-from-window", action="store_true")
    p.add_argument("--stats-from-window", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--out", type=Path, default=Path("bench/results/shape_screens.jsonl"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    preset = get_preset("default")
    over = {}
    for item in a.set:
        k, v = item.split("=", 1)
        over[k] = None if v == "none" else (float(v) if "." in v or "e" in v else int(v))
    preset = apply_overrides(preset, {"max_steps": a.steps, **over})
    data = load_dataset(a.dataset, length=preset.model["len_input"],
                        cache_dir=Path.home() / ".cache" / "vqfast" / "data")
    train_x, test_x = data.univariate("train"), data.univariate("test")
    torch.manual_seed(a.seed)
    model = ScreenModel(**preset.model)
    model.z_from_window, model.stats_from_window = a.z_from_window, a.stats_from_window
    if a.z_from_window:
        from vqfast.model.modules import MLP
        model.window_encoder = MLP(preset.model["len_s"], preset.model["dim_code"],
                                   preset.model["dim_embedding"])
    model.fast = True
    model.loss_weights = dict(preset.loss_weights)
    groups = [
        {"params": list(model.shape_decoder.parameters()), "lr": preset.train.lr * a.decoder_lr},
        {"params": list(model.codebook.parameters()), "lr": preset.train.lr * a.codebook_lr},
    ]
    ids = {id(q) for g in groups for q in g["params"]}
    groups.insert(0, {"params": [q for q in model.parameters() if id(q) not in ids]})
    opt = make_optimizer(groups, preset.train)
    sched = lr_scheduler(opt, preset.train)
    gen = torch.Generator().manual_seed(a.seed)
    bs = preset.train.batch_size
    usage = torch.zeros(model.num_code)
    recent = []
    start = time.time()
    for step in range(a.steps):
        x = train_x[torch.randint(len(train_x), (bs,), generator=gen)]
        out, losses = model(x, mode="pretrain", return_latents=True)
        loss = model.total_loss(losses)
        mean, std = x.mean(-1, keepdim=True), (x.var(-1, keepdim=True) + 1e-5).sqrt()
        if a.norm_shape or a.norm_shape_ze:
            target = zscore_rows(out["s_true"].detach(), std, mean)
            if a.norm_shape:
                fit = model.shape_decoder(out["code"]) - target
                loss = loss + a.norm_shape * fit.pow(2).mean()
            if a.norm_shape_ze:
                fit = model.shape_decoder(out["z_e"]) - target
                loss = loss + a.norm_shape_ze * fit.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), preset.train.grad_clip)
        opt.step()
        sched.step()
        z = out["z_e"].detach().reshape(-1, out["z_e"].shape[-1])
        recent = (recent + [z])[-4:]
        usage += torch.bincount(out["code_idx"].flatten(), minlength=model.num_code)
        w = model.codebook.embedding.weight
        if a.kmeans_at and step + 1 == a.kmeans_at:
            w.data.copy_(kmeans(torch.cat(recent), model.num_code, seed=a.seed))
            usage.zero_()
        elif a.restart_every and (step + 1) % a.restart_every == 0 and step + 1 > a.kmeans_at:
            dead = (usage == 0).nonzero().flatten()
            pool = torch.cat(recent)
            pick = torch.randint(len(pool), (len(dead),), generator=gen)
            w.data[dead] = pool[pick]
            usage.zero_()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1} loss {loss.item():.3f} "
                  + " ".join(f"{k}={v.item():.3f}" for k, v in losses.items()), flush=True)
    seconds = time.time() - start
    metrics, values = token_metrics_on(model, test_x, return_values=True)
    distinct = distinct_codes(model, values["counts"])
    row = {"tag": a.tag, "dataset": a.dataset, "steps": a.steps, "seed": a.seed,
           "options": {k: v for k, v in vars(a).items() if k not in ("out", "tag", "threads")},
           "train_seconds": round(seconds, 1), "x_r2": metrics["x_r2"],
           "shape_r2": metrics["shape_r2"], "sigma_median": metrics["sigma"]["median"],
           "l_median": metrics["l"]["median"], "codes_used": metrics["codes_used"],
           "perplexity": metrics["perplexity"], "distinct_shapes": len(distinct.used_groups)}
    print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
