"""espeak-ng's phoneme mnemonics -> the ARPAbet labels tm's driver and features use."""

from __future__ import annotations

import re

from tmcli.speech.phones import SIL

_MARKS = re.compile(r"[ˈˌ'\",%=:ː]")  # stress and length
_MODIFIERS = re.compile(r"[^A-Za-z@&]")  # a~ -> a, p# -> p, n^ -> n, t_s\ -> ts, @2 -> @
# made postalveolar by a retroflex "." or alveolopalatal "\\" mark, affricates also by ";" (Polish ts;
# is ć); s; is only palatalised (Russian sʲ)
_SIBILANTS = {"ts": ("CH", ".;\\"), "dz": ("JH", ".;\\"), "s": ("SH", ".\\"), "z": ("ZH", ".\\")}
_LABELS = {
    # whole mnemonics and two-letter prefixes: diphthongs, affricates, odd ones out
    "a#": "AH",
    "@r": "ER",
    ";": "Y",
    "pF": "P",
    "pf": "P",
    "sx": "SH",
    "tS": "CH",
    "dZ": "JH",
    "ts": "S",
    "dz": "Z",
    "aI": "AY",
    "ai": "AY",
    "&i": "AY",
    "aU": "AW",
    "au": "AW",
    "&U": "AW",
    "OI": "OY",
    "oI": "OY",
    "OY": "OY",
    "oi": "OY",
    "eI": "EY",
    "ei": "EY",
    "EI": "EY",
    "Ei": "EY",
    "oU": "OW",
    "@U": "OW",
    "i@": "IH",
    "e@": "EH",
    "U@": "UH",
    "o@": "AO",
    "O@": "AO",
    "A@": "AA",
    # first letters: consonants
    "p": "P",
    "b": "B",
    "B": "B",
    "m": "M",
    "f": "F",
    "v": "V",
    "T": "TH",
    "D": "DH",
    "s": "S",
    "z": "Z",
    "S": "SH",
    "Z": "ZH",
    "c": "CH",
    "J": "JH",
    "t": "T",
    "d": "D",
    "n": "N",
    "l": "L",
    "L": "L",
    "r": "R",
    "R": "R",
    "*": "R",
    "k": "K",
    "q": "K",
    "x": "K",
    "g": "G",
    "G": "G",
    "Q": "G",
    "N": "NG",
    "j": "Y",
    "w": "W",
    "h": "HH",
    "H": "HH",
    "X": "HH",
    "C": "HH",
    "?": "HH",
    # first letters: vowels (espeak writes W, Y, 2, 9, 8 for front or central rounded vowels)
    "a": "AA",
    "A": "AA",
    "0": "AA",
    "&": "AE",
    "6": "AH",
    "@": "AH",
    "V": "AH",
    "7": "AH",
    "3": "ER",
    "e": "EH",
    "E": "EH",
    "i": "IY",
    "I": "IH",
    "1": "IH",
    "o": "OW",
    "O": "AO",
    "u": "UW",
    "U": "UH",
    "y": "UW",
    "Y": "UH",
    "2": "UH",
    "9": "UH",
    "8": "UH",
    "W": "UH",
}
_VOWEL_START = set("aeiouAEIOUyYVW@&0123456789")
_STOPS = frozenset({"P", "B", "T", "D", "K", "G", "CH", "JH"})


def to_driver_label(mnemonic: str) -> str:
    """An espeak phoneme mnemonic (any language) -> the driver's viseme key, by articulation:
    the mouth shape is what matters, so voicing, aspiration, length, nasality, stress go."""
    m = _MARKS.sub("", mnemonic)
    if not m or m[0] in "_(|":  # pauses, and language switches such as "(en)"
        return SIL
    core = m[0] + _MODIFIERS.sub("", m[1:])
    for key in (core[:2], core[:1]):
        if key in _SIBILANTS and any(c in m for c in _SIBILANTS[key][1]):
            return _SIBILANTS[key][0]
    for key in (m, core[:2], core[:1]):
        if key in _LABELS:
            return _LABELS[key]
    return "AH" if m[0] in _VOWEL_START else "T"
