"""A tiny transformer block (LayerNorm, attention, GELU MLP) learns to reverse sequences."""

from __future__ import annotations

import argparse

import covshift
import torch
from torch import nn
from torch.nn import functional as F

VOCAB, LENGTH = 10, 8


class Block(nn.Module):
    """Pre-norm: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(torch.randn(LENGTH, width) * 0.02)
        self.ln_attention = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.ln_out = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position
        h = self.ln_attention(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln_mlp(x))
        logits: torch.Tensor = self.head(self.ln_out(x))
        return logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--every", type=int, default=20, help="a frame every N steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--logdir", default=None, help="run folders go here")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Block(width=32, heads=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with covshift.watch(
        model, name="transformer-block", every=args.every, logdir=args.logdir, optimizer=optimizer
    ) as w:
        print(f"writing {w.path}")
        for _ in range(args.steps):
            tokens = torch.randint(0, VOCAB, (args.batch_size, LENGTH))
            target = tokens.flip(1)  # the task: the sequence reversed
            logits = model(tokens)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            acc = (logits.argmax(-1) == target).float().mean()
            w.step(loss=loss, acc=acc)
    print(f"trained {args.steps} steps; last batch token accuracy {acc.item():.3f}")
    print(f"run folder: {w.path}")
    print(f"see it: covshift serve --logdir {w.path.parent}")


if __name__ == "__main__":
    main()
