"""An index formula on the recipe's common band names, checked here and built as an ``ee.Image``.

``[composite] expression = "(nir - red) / (nir + red + 0.16)"`` replaces the list of
built-in indices. The formula is parsed with Python's own parser (nothing is evaluated),
restricted to numbers, the common band names (reflectance 0-1 after the Collection 2
scale and offset), ``+ - * / **``, unary minus and parentheses. Anything else is refused
before any request, naming the token. The graph it becomes is built from Earth Engine's
``Image`` arithmetic (``add``, ``subtract``, ...), so what Earth Engine receives does
not depend on a server-side parser.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ee

#: The band names a formula may use: the recipe's reflectance bands after renaming.
COMMON_BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")

_IMAGE_METHODS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide", ast.Pow: "pow"}
_NUMBER_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.Pow: operator.pow}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.FloorDiv: "//",
            ast.Mod: "%", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<",
            ast.RShift: ">>"}


class FormulaError(ValueError):
    """A formula that cannot be an index: the message names the token and the fix."""


@dataclass(frozen=True)
class Formula:
    """A checked formula: its text, its parsed tree and the bands it reads."""

    text: str
    tree: ast.expr
    bands: tuple[str, ...]

    def build(self, reflectance: ee.Image) -> ee.Image:
        """The formula over ``reflectance`` (an image with the common band names), as one ee.Image."""
        import ee

        value = _build(self.tree, reflectance)
        return value if isinstance(value, ee.Image) else ee.Image.constant(value)


def parse_formula(text: str) -> Formula:
    """Check ``text`` and return the :class:`Formula`; :class:`FormulaError` names what is wrong."""
    if not text.strip():
        raise FormulaError("is empty; write a formula such as '(nir - red) / (nir + red)'")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        token = _token_at(text.strip(), exc.offset)
        near = f" at '{token}' (column {exc.offset})" if token and exc.offset else ""
        raise FormulaError(f"'{text}' is not a formula: {exc.msg}{near}; use numbers, "
                           f"{', '.join(COMMON_BANDS)}, + - * / ** and parentheses") from None
    bands: list[str] = []
    _check(tree, bands)
    if not bands:
        raise FormulaError(f"'{text}' uses no band; use at least one of {', '.join(COMMON_BANDS)}")
    return Formula(text, tree, tuple(dict.fromkeys(bands)))


def _token_at(text: str, offset: int | None) -> str:
    if not offset or offset > len(text):
        return text[-1:] if text else ""
    rest = text[offset - 1:].split()
    return rest[0] if rest else ""


def _check(node: ast.AST, bands: list[str]) -> None:
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _IMAGE_METHODS:
            symbol = _SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise FormulaError(f"uses '{symbol}', which an index formula cannot; use + - * / or **")
        _check(node.left, bands)
        _check(node.right, bands)
        _fold(node)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise FormulaError("uses a unary operator other than '-' or '+'; use + - * / or **")
        _check(node.operand, bands)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"uses {node.value!r}, which is not a number or a band name")
    elif isinstance(node, ast.Name):
        if node.id not in COMMON_BANDS:
            raise FormulaError(f"uses '{node.id}', which is not a band; use {', '.join(COMMON_BANDS)}")
        bands.append(node.id)
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise FormulaError(f"calls '{name}(...)'; a formula may use only numbers, bands, + - * / ** and "
                           "parentheses")
    else:
        raise FormulaError(f"uses '{ast.unparse(node)}', which is not a number, a band or + - * / **")


def _fold(node: ast.AST) -> float | None:
    """The value of a part without bands, computed here so 1/0 is refused before any request; else None."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.UnaryOp):
        value = _fold(node.operand)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp):
        left, right = _fold(node.left), _fold(node.right)
        if left is None or right is None:
            return None
        try:
            value = _NUMBER_OPS[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError) as exc:
            raise FormulaError(f"computes '{ast.unparse(node)}', which has no value ({exc})") from None
        if isinstance(value, complex) or value != value or abs(value) == float("inf"):
            raise FormulaError(f"computes '{ast.unparse(node)}', which is not a finite number")
        return value
    return None


def _build(node: ast.AST, image: ee.Image) -> Any:
    """The ee.Image (or a plain number, where no band is involved) that ``node`` computes."""
    import ee

    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return image.select(node.id)
    if isinstance(node, ast.UnaryOp):
        operand = _build(node.operand, image)
        if isinstance(node.op, ast.UAdd):
            return operand
        return -operand if isinstance(operand, float) else operand.multiply(-1)
    assert isinstance(node, ast.BinOp)
    left, right = _build(node.left, image), _build(node.right, image)
    if isinstance(left, float) and isinstance(right, float):
        return _NUMBER_OPS[type(node.op)](left, right)
    if isinstance(left, float):
        left = ee.Image.constant(left)
    return getattr(left, _IMAGE_METHODS[type(node.op)])(right)
