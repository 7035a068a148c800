"""im_data: Instruction Modelling data core (pure: imports neither Beam nor TRL).

Turns instruction-tuning records into aligned ``input_ids`` / ``roles`` / ``loss_weights`` with exact token
roles for any chat template, under a frozen, versioned weight policy (IT, IM, WIT or custom), and keeps
mergeable length statistics (the paper's dataset ratio = mean instruction length / mean output length).
"""

from .encode import IGNORE_INDEX, EncodedExample, Encoder
from .errors import REASONS, RecordError, TemplateError
from .formats import FormatOptions, normalize_record, parse_json_line
from .policy import WeightPolicy, parse_weight_overrides
from .roles import ROLE_CODES, ROLE_LABELS, Role
from .stats import LengthStats
from .spans import Violation, check_invariants, find_spans
from .templates import BUILTIN_TEMPLATES, ChatTemplate
from .tokenizer import load_tokenizer, tokenizer_fingerprint

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_TEMPLATES", "ChatTemplate", "EncodedExample", "Encoder", "FormatOptions", "IGNORE_INDEX",
    "LengthStats", "REASONS", "ROLE_CODES", "ROLE_LABELS", "RecordError", "Role", "TemplateError",
    "Violation", "WeightPolicy", "check_invariants", "find_spans", "load_tokenizer", "normalize_record", "parse_json_line",
    "parse_weight_overrides", "tokenizer_fingerprint", "__version__",
]
