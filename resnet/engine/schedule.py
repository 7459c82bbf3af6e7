"""The learning-rate schedule (Sec. 3.4, 4.2): the base rate, /10 at milestones, and the warm-up of
the deepest CIFAR nets."""
from __future__ import annotations


def learning_rate(recipe, iteration: int, warming_up: bool) -> float:
    """lr for the iteration about to run: warm-up lr, else base lr /10 at each passed milestone."""
    if warming_up and getattr(recipe, "warmup_lr", None) is not None:
        return recipe.warmup_lr
    passed = sum(1 for milestone in recipe.milestones if iteration >= milestone)
    return recipe.lr * recipe.lr_decay**passed


def warmup_check(job, state, row, dist) -> None:
    # Sec. 4.2: "we use 0.01 to warm up the training until the training error is below 80% (about
    # 400 iterations), and then go back to 0.1 and continue training".
    recipe = job.recipe
    if state.warming_up and row["train_error"] < recipe.warmup_until_train_error:
        state.warming_up = False
        state.warmup_ended_at = row["iteration"]
        dist.print(f"{job.cell}: training error {row['train_error']:.1f}% < {recipe.warmup_until_train_error}% "
                   f"at iteration {row['iteration']}: warm-up over, lr back to {recipe.lr:g}")
