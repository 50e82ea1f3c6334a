"""skintl: transfer learning for skin lesions in clinical photographs."""

__version__ = "0.1.0"
