import pytest
import torch

from pictor.embedded import WEIGHTS_DIR
from pictor.engine.loading import load_model_folder


@pytest.fixture(scope="session")
def embedded_pipe():
    """The shipped embedded model, loaded once through the model-folder loader."""
    torch.set_num_threads(2)
    return load_model_folder(WEIGHTS_DIR)
