"""course_lib.device: the device and the run profile follow the machine and the environment."""
import pytest
import torch

from course_lib import device as dev

ENV = ("COURSE_PROFILE", "CI", "NBGRADER_EXECUTION")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_get_device_is_the_best_available():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    assert dev.get_device().type == expected


@pytest.mark.parametrize("device,profile", [("cpu", "small"), ("cuda", "full"), ("mps", "small")])
def test_profile_follows_the_device(clean_env, device, profile):
    assert dev.run_profile(device) == profile


@pytest.mark.parametrize("name,value", [("CI", "true"), ("CI", "1"), ("NBGRADER_EXECUTION", "autograde"),
                                        ("NBGRADER_EXECUTION", "validate")])
def test_ci_and_grading_use_the_smallest_profile(clean_env, name, value):
    clean_env.setenv(name, value)
    assert dev.run_profile("cuda") == "smallest"
    assert dev.run_profile("cpu") == "smallest"


def test_ci_false_is_not_ci(clean_env):
    clean_env.setenv("CI", "false")
    assert dev.run_profile("cpu") == "small"


def test_course_profile_overrides(clean_env):
    clean_env.setenv("CI", "true")
    clean_env.setenv("COURSE_PROFILE", "full")
    assert dev.run_profile("cpu") == "full"
    clean_env.setenv("COURSE_PROFILE", "huge")
    with pytest.raises(ValueError, match="COURSE_PROFILE must be one of full, small, smallest"):
        dev.run_profile()


def test_pick():
    assert dev.pick("small", full=3, small=2, smallest=1) == 2
    assert dev.pick("smallest", full=3, small=2, smallest=1) == 1
    with pytest.raises(ValueError, match="profile must be one of"):
        dev.pick("medium", full=3, small=2, smallest=1)


def test_describe_names_the_device():
    assert dev.describe("cpu").startswith("cpu (")
