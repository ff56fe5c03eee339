"""Schedules: the reference values of the study's Appendix A and the sigma conversions."""

import pytest
import torch

from streamingt2v_core.sampling.schedules import (
    alphas_cumprod_to_sigmas,
    ddim_timesteps,
    modelscope_alphas_cumprod,
    modelscope_betas,
    refiner_alphas_cumprod,
    refiner_betas,
    refiner_sampling_sigmas,
    refiner_trailing_timesteps,
    refiner_vp_sigmas,
    sigma_to_timestep,
    sigmas_to_alphas_cumprod,
    timestep_to_sigma,
    vp_coefficients,
)

# Study, Appendix A (computed from the official formulas), 4-5 significant digits.
APPENDIX_A_SIGMAS = [
    4.1648, 3.857, 3.5755, 3.317, 3.0786, 2.8582, 2.6536, 2.4631, 2.2854, 2.1191, 1.9631,
    1.8164, 1.6783, 1.5478, 1.4244, 1.3075, 1.1965, 1.0909, 0.9903, 0.8944, 0.8026, 0.7149,
    0.6307, 0.5499, 0.4723, 0.3975, 0.3253, 0.2556, 0.1882, 0.1229, 0.0,
]


def test_ddim_timesteps_leading_offset_one():
    t = ddim_timesteps(50)
    assert t.tolist() == list(range(981, 0, -20))
    assert len(t) == 50 and t[0] == 981 and t[-1] == 1


def test_ddim_timesteps_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                    beta_end=0.012, steps_offset=1, set_alpha_to_one=False,
                                    clip_sample=False)
    for steps in (50, 25, 7):
        sched.set_timesteps(steps)
        assert sched.timesteps.tolist() == ddim_timesteps(steps).tolist()
    assert torch.allclose(sched.alphas_cumprod.double(), modelscope_alphas_cumprod(), atol=1e-6)


def test_modelscope_betas_scaled_linear():
    b = modelscope_betas()
    assert b.shape == (1000,)
    assert b[0].item() == pytest.approx(0.00085, abs=1e-10)
    assert b[-1].item() == pytest.approx(0.012, abs=1e-10)
    assert torch.allclose(b.sqrt().diff(), b.sqrt().diff()[0].expand(999), atol=1e-12)


def test_refiner_sampling_sigmas_match_appendix_a():
    s = refiner_sampling_sigmas()
    assert s.shape == (31,)
    assert torch.allclose(s, torch.tensor(APPENDIX_A_SIGMAS, dtype=torch.float64), atol=1e-4)


def test_refiner_schedule_reference_points():
    vp = refiner_vp_sigmas()
    ac = refiner_alphas_cumprod()
    assert vp[599].item() == pytest.approx(0.9724, abs=1e-4)
    assert ac[599].sqrt().item() == pytest.approx(0.2335, abs=1e-4)
    assert vp[0].item() == pytest.approx(0.0011, abs=1e-4)
    assert vp[999].item() == 1.0 and ac[999].item() == 0.0  # zero terminal SNR
    assert bool((vp.diff() > 0).all())


def test_refiner_trailing_timesteps():
    t = refiner_trailing_timesteps()
    assert t.shape == (30,)
    assert t[0].item() == 599.0
    assert t[1].item() == pytest.approx(579.65, abs=1e-2)
    assert t[-1].item() == pytest.approx(37.71, abs=1e-2)


def test_refiner_betas_reproduce_alphas_cumprod():
    assert torch.allclose(torch.cumprod(1 - refiner_betas(), 0), refiner_alphas_cumprod(),
                          atol=1e-12)


def test_sigma_alpha_conversions_roundtrip():
    ac = modelscope_alphas_cumprod()
    s = alphas_cumprod_to_sigmas(ac)
    assert torch.allclose(sigmas_to_alphas_cumprod(s), ac, atol=1e-12)
    alpha, sigma_vp = vp_coefficients(s)
    assert torch.allclose(alpha ** 2, ac, atol=1e-12)
    assert torch.allclose(alpha ** 2 + sigma_vp ** 2, torch.ones_like(ac), atol=1e-12)


@pytest.mark.parametrize("schedule", [modelscope_alphas_cumprod, refiner_alphas_cumprod])
def test_timestep_sigma_lookups_are_inverse(schedule):
    ac = schedule()
    t = torch.tensor([0.0, 1.0, 3.25, 500.5, 599.0, 980.75, 998.0], dtype=torch.float64)
    s = timestep_to_sigma(t, ac)
    assert torch.allclose(timestep_to_sigma(torch.arange(1000.0), ac)[:999],
                          alphas_cumprod_to_sigmas(ac)[:999], rtol=1e-12)
    assert torch.allclose(sigma_to_timestep(s, ac), t, atol=1e-9)
    assert sigma_to_timestep(s, ac, round_to_int=True).tolist() == t.round().tolist()


def test_refiner_sigmas_map_back_to_trailing_timesteps():
    s = refiner_sampling_sigmas()[:-1]
    t = sigma_to_timestep(s, refiner_alphas_cumprod())
    assert torch.allclose(t, refiner_trailing_timesteps(), atol=1e-9)


def test_bad_input():
    with pytest.raises(ValueError, match="num_steps"):
        ddim_timesteps(0)
    with pytest.raises(ValueError, match="num_steps"):
        refiner_trailing_timesteps(0)
    with pytest.raises(ValueError, match="t_start"):
        refiner_trailing_timesteps(30, t_start=0)
