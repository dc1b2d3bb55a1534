"""Mutants of the reference solutions that no test can tell from the original.

``python -m course_tools mutate`` counts a survivor listed here as
*equivalent*: it leaves the kill ratio instead of lowering it. List a mutant
only when it computes the same result as the reference (for every input the
notebook allows, up to floating-point rounding), and say why. A survivor that
does differ from the reference is a gap in the hidden tests: strengthen them
instead. Ids come from ``python -m course_tools mutate <assignment> --list``;
the test suite fails on an id that is no longer generated, so the list
follows the code.
"""

from __future__ import annotations

#: mutant id -> why it is equivalent to the reference solution
EQUIVALENT: dict[str, str] = {
    # 1_layers
    "1_layers:linear:binop:MatMult>Mult@L18C28":
        "ones (N x 1) * b.T (1 x Cout) broadcasts to the same N x Cout matrix as ones @ b.T: "
        "a product with an inner size of 1 has no sum, so the two are equal to the last bit",
    "1_layers:sigmoid:compare:GtE>Gt@L7C27":
        "the two branches of the stable sigmoid agree at Z = 0 (E = 1, so 1/(1+E) = E/(1+E) = 1/2); "
        "which one takes Z = 0 cannot change the result",
    # 5_batchnorm, BatchNorm1d: the batch statistics M and V are internal (the spec names no shape
    # for them); (C,) and (1, C) broadcast the same way everywhere they are used, and the running
    # statistics stay (1, C) because running_M / running_V are (1, C).
    "5_batchnorm:bn_class:keepdims:drop@L30C18":
        "M of shape (C,) instead of (1, C) broadcasts identically in Z - M and in the running mean",
    "5_batchnorm:bn_class:keepdims:drop@L31C18":
        "V of shape (C,) instead of (1, C) broadcasts identically in sqrt(V + eps) and in the running variance",
    # 5_batchnorm, backward: dLdV and dLdM are locals that only meet (N, C) arrays by broadcasting.
    "5_batchnorm:bn_class:keepdims:drop@L45C23":
        "the local dLdV of shape (C,) instead of (1, C) broadcasts identically against (N, C) and (1, C)",
    "5_batchnorm:bn_class:keepdims:drop@L46C17":
        "the local dLdM of shape (C,) instead of (1, C) broadcasts identically in dLdM / N against (N, C)",
    # 5_batchnorm, backward: the spec's second term of dLdM, 2/N dLdV sum_i (Z - M), is zero in exact
    # arithmetic because the centred batch sums to zero (about 1e-16 of rounding), so changing its
    # sign, its factor 2/N or how it sums cannot change any result beyond rounding.
    "5_batchnorm:bn_class:binop:Sub>Add@L46C16":
        "adds instead of subtracts the term 2/N dLdV sum_i (Z - M), which is zero since sum_i (Z - M) = 0",
    "5_batchnorm:bn_class:binop:Div>Mult@L47C15":
        "2 * N instead of 2 / N scales the term dLdV sum_i (Z - M), which is zero since sum_i (Z - M) = 0",
    "5_batchnorm:bn_class:const:+1@L47C15":
        "3 / N instead of 2 / N scales the term dLdV sum_i (Z - M), which is zero since sum_i (Z - M) = 0",
    "5_batchnorm:bn_class:const:-1@L47C15":
        "1 / N instead of 2 / N scales the term dLdV sum_i (Z - M), which is zero since sum_i (Z - M) = 0",
    "5_batchnorm:bn_class:const:neg@L47C15":
        "-2 / N instead of 2 / N scales the term dLdV sum_i (Z - M), which is zero since sum_i (Z - M) = 0",
    "5_batchnorm:bn_class:axis:drop@L47C35":
        "sums the centred batch over all entries instead of per feature: both are zero up to rounding",
    "5_batchnorm:bn_class:keepdims:drop@L47C35":
        "the zero vector sum_i (Z - M) of shape (C,) instead of (1, C): the term stays zero",
    "5_batchnorm:bn_class:reduce:sum>mean@L47C35":
        "the mean instead of the sum of the centred batch: both are zero up to rounding",
    # 6_bonus_adam_dropout
    "6_bonus_adam_dropout:dropout_class:compare:GtE>Gt@L15C21":
        "a uniform number in [0, 1) equals p with probability 0 (2^-53 per entry at most): keeping the entries "
        "with u > p or with u >= p draws the same masks in distribution, and for p = 0 both keep everything "
        "but an entry drawn as exactly 0.0",
}
