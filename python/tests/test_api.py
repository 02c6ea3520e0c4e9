"""The user-facing API without a runner (as a developer's own tests would use it)."""

import builtins
import unittest

import sluice_runner
from sluice_runner.errors import describe
from sluice_runner.userapi import format_message
import wf


class ApiTest(unittest.TestCase):
    def test_userapi_is_a_global(self):
        self.assertIs(builtins.UserApi, sluice_runner.UserApi)

    def test_step_error(self):
        try:
            wf.stepError("STOCK-ERROR", "none left", {"sku": 1})
        except wf.StepError as e:
            err = describe(e)
        self.assertEqual(err["type"], "STOCK-ERROR")
        self.assertEqual(err["message"], "none left")
        self.assertEqual(err["info"], {"sku": 1})
        # The user's frame, not the API's frame that raised.
        self.assertIn("test_step_error", err["traceback"])
        self.assertNotIn("wf.py", err["traceback"])

    def test_plain_exception(self):
        try:
            raise ValueError("bad value")
        except ValueError as e:
            err = describe(e)
        self.assertEqual((err["type"], err["message"], err["info"]), ("ValueError", "bad value", None))

    def test_format(self):
        self.assertEqual(format_message("%s-%d", ("a", 1)), "a-1")
        self.assertEqual(format_message("%(x)s", ({"x": 2},)), "2")
        self.assertEqual(format_message("100%", ()), "100%")
        self.assertEqual(format_message("%d", ("x",)), "%d 'x'")

    def test_callbacks_outside_a_runner_fail_cleanly(self):
        with self.assertRaises(sluice_runner.QorusException) as caught:
            UserApi.createOrder("W", {})  # noqa: F821 - a builtin
        self.assertEqual(caught.exception.err, "NO-HOST")

    def test_step_outside_a_call_has_empty_context(self):
        class S(wf.QorusNormalStep):
            pass

        self.assertEqual(S().getStaticData(), {})
        self.assertIsNone(S().getWfiid())


if __name__ == "__main__":
    unittest.main()
