"""Tests of the recorder-dump converter's logic, without torch or NumPy:
python3 python/test_sglang_dump_to_json.py"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))

from sglang_dump_to_json import to_json_dump  # noqa: E402


class FakeTensor:
    """Stands in for a torch tensor or NumPy array: only `tolist` is used."""

    def __init__(self, values):
        self.values = values

    def tolist(self):
        return self.values


# 2 buffered steps x 2 layers x 3 experts, the first layer dense (all zero).
STEPS = [[[0, 0, 0], [1, 0, 2]], [[0, 0, 0], [3, 1, 0]]]


class ConverterTest(unittest.TestCase):
    def test_recorder_dump_keeps_logical_count_only(self):
        dump = {"rank": 0, "logical_count": FakeTensor(STEPS), "average_utilization_rate_over_window": None}
        self.assertEqual(json.dumps(to_json_dump(dump)), json.dumps({"logical_count": STEPS}))

    def test_steps_can_be_summed(self):
        summed = to_json_dump({"logical_count": STEPS}, sum_steps=True)
        self.assertEqual(summed, {"logical_count": [[0, 0, 0], [4, 1, 2]]})
        # The input is left as it was.
        self.assertEqual(STEPS[0][1], [1, 0, 2])

    def test_two_dimensional_counts_pass_through(self):
        self.assertEqual(to_json_dump({"logical_count": [[1.5, 2]]}), {"logical_count": [[1.5, 2]]})

    def test_bad_dumps_name_the_position(self):
        cases = [
            ({"physical_count": []}, "no `logical_count` key"),
            ({"logical_count": [1, 2]}, "got 1 dimensions"),
            ({"logical_count": [[1, -5]]}, "`logical_count[0][1]`: -5 is not a finite count"),
            ({"logical_count": [[1, "x"]]}, "`logical_count[0][1]`: 'x' is not a number"),
            ({"logical_count": [[[1]], [[1], [2]]]}, "`logical_count[1]` differs in shape"),
        ]
        for dump, message in cases:
            with self.assertRaises(ValueError) as raised:
                to_json_dump(dump, sum_steps=True)
            self.assertIn(message, str(raised.exception))


if __name__ == "__main__":
    unittest.main()
