"""Kept so ``from tinylora.gpt import GPT`` keeps working; the model lives in ``tinylora.models.gpt``."""
from .models.gpt import *  # noqa: F401,F403
from .models.gpt import __all__  # noqa: F401
