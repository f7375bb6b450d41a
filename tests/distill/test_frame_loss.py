"""training.frame_loss: plain and balanced frame BCE, the loss distill (--balanced-frames) and adapt's fine-tune use."""

import torch

from earmark.training import frame_loss


def _fitted_rate(balanced: bool) -> torch.Tensor:
    """The score a free bias per class settles at, for one class sounding in 2 of 32 frames and one in 16 of 32."""
    target = torch.zeros(2, 16, 2)
    target[0, 3, 0] = target[1, 9, 0] = 1
    target[:, :8, 1] = 1
    bias = torch.zeros(2, requires_grad=True)
    optimiser = torch.optim.SGD([bias], lr=0.5)
    for _ in range(2000):
        optimiser.zero_grad()
        frame_loss(bias.expand(2, 16, 2), target, balanced).backward()
        optimiser.step()
    return torch.sigmoid(bias.detach())


def test_plain_bce_settles_at_each_class_rate_and_balanced_at_one_half():
    assert torch.allclose(_fitted_rate(False), torch.tensor([2 / 32, 0.5]), atol=1e-3)
    # balanced: the rare class's 2 positives weigh 30 / 2 each, so they count as much as its 30 negatives
    assert torch.allclose(_fitted_rate(True), torch.tensor([0.5, 0.5]), atol=1e-3)


def test_targets_on_another_frame_grid_are_resampled_to_the_logits():
    logits, target = torch.zeros(1, 8, 1), torch.ones(1, 16, 1)
    assert torch.isclose(frame_loss(logits, target), torch.log(torch.tensor(2.0)))
