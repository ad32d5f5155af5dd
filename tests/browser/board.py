"""Drives the class board in headless Chromium (Debian's chromium and chromium-driver, selenium).

Run by tests/board.rs; each mode exits non-zero with the reason when an assertion fails.

  board.py report PAGE.html RUN.json SHOT.png
      The HTML report against the --json document of the same run: the matrix (rows, columns,
      every cell's status text), a click opens the right transcript, sorting and filtering,
      markup from a server shown and not run, no console errors.
  board.py live URL MODE_FILE TARGETS_FILE NEW_TARGET_LINE INTERVAL_S SHOT.png
      The live board: the switchable server's row fails; after MODE_FILE says "fixed" it turns
      green within two intervals without a reload; a server added to TARGETS_FILE appears; the
      history strip grows; no console errors.
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def browser():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def label(target):
    return target["name"] or target["target"]


def matrix(driver):
    """The body rows as {server: {case id: cell text}}, and the row order."""
    rows, order = {}, []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#matrix tbody tr"):
        name = tr.get_attribute("data-target")
        order.append(name)
        rows[name] = {td.get_attribute("data-case"): td.text.strip()
                      for td in tr.find_elements(By.CSS_SELECTOR, "td[data-case]")}
    return rows, order


def wait_for(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds:.0f} s")


def report(page, run_json, shot):
    with open(run_json) as f:
        run = json.load(f)
    driver = browser()
    try:
        driver.get("file://" + page)
        ids = [c["id"] for c in run["catalogue"]]
        heads = [th.find_element(By.CSS_SELECTOR, ".id").text
                 for th in driver.find_elements(By.CSS_SELECTOR, "#matrix thead th.case")]
        check(heads == ids, f"columns {heads} != catalogue {ids}")
        rows, order = matrix(driver)
        expected = {label(t): {c["id"]: c["status"] for c in t["cases"]} for t in run["targets"]}
        check(set(rows) == set(expected), f"rows {sorted(rows)} != targets {sorted(expected)}")
        for server, cases in expected.items():
            check(rows[server] == cases, f"{server}: cells {rows[server]} != statuses {cases}")
        check(order == sorted(order, key=str.lower) or order == sorted(order),
              f"sorted by name at first: {order}")
        for t in run["targets"]:
            tr = driver.find_element(By.CSS_SELECTOR, f'#matrix tbody tr[data-target="{label(t)}"]')
            must = tr.find_element(By.CSS_SELECTOR, "td.must").text
            want = f'{t["summary"]["must"]["passed"]}/{t["summary"]["must"]["total"]}'
            check(must == want, f"{label(t)}: must {must} != {want}")

        # A click (and the keyboard) opens the right case's detail and transcript.
        failing = next(t for t in run["targets"] if not t["passed"] and not t["error"])
        case = next(c for c in failing["cases"] if c["status"] in ("fail", "timeout"))
        cell = driver.find_element(
            By.CSS_SELECTOR, f'#matrix tbody tr[data-target="{label(failing)}"] td[data-case="{case["id"]}"] button')
        cell.click()
        dialog = driver.find_element(By.ID, "detail")
        check(dialog.is_displayed(), "the detail opens on click")
        title = driver.find_element(By.ID, "detail-title").text
        check(label(failing) in title and case["id"] in title, f"detail title {title!r}")
        transcript = driver.find_element(By.ID, "detail-transcript").get_attribute("textContent")
        check(transcript == "\n".join(case["transcript"]), f"transcript of {case['id']}: {transcript!r}")
        detail = driver.find_element(By.ID, "detail-text").get_attribute("textContent")
        check(detail == case["detail"], f"detail {detail!r} != {case['detail']!r}")
        driver.save_screenshot(shot.replace(".png", "-detail.png"))
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wait_for("Escape closes the detail", lambda: not dialog.is_displayed(), 3)
        cell.send_keys(Keys.ENTER)
        check(dialog.is_displayed(), "Enter on a focused cell opens the detail")
        driver.find_element(By.ID, "detail-close").click()
        check(not dialog.is_displayed(), "Close closes the detail")

        # Markup a server sent is shown as text and runs nothing.
        hostile = next(t for t in run["targets"] if "markup" in label(t))
        hostile_case = next(c for c in hostile["cases"] if "<script>" in c["detail"] + "".join(c["transcript"]))
        driver.find_element(
            By.CSS_SELECTOR, f'#matrix tbody tr[data-target="{label(hostile)}"] td[data-case="{hostile_case["id"]}"] button').click()
        shown = driver.find_element(By.ID, "detail-transcript").get_attribute("textContent") + \
            driver.find_element(By.ID, "detail-text").get_attribute("textContent")
        check("<script>" in shown, "the server's markup is shown as text")
        check(driver.execute_script("return window.pwned === undefined"), "the server's script ran")
        check("pwned" not in driver.title, f"title changed: {driver.title}")
        check(not driver.find_elements(By.CSS_SELECTOR, "#detail img, #matrix img"), "an <img> was made")
        driver.find_element(By.ID, "detail-close").click()

        # Sorting by failures puts the most failures first; the filter keeps failing rows.
        driver.find_element(By.CSS_SELECTOR, 'input[name="sort"][value="failures"]').click()
        _, order = matrix(driver)

        def failures(t):
            return 1000 if t["error"] else sum(c["status"] in ("fail", "timeout") for c in t["cases"])
        counts = [failures(next(t for t in run["targets"] if label(t) == name)) for name in order]
        check(counts == sorted(counts, reverse=True), f"by failures: {list(zip(order, counts))}")
        driver.find_element(By.ID, "failing-only").click()
        _, order = matrix(driver)
        want = sorted(label(t) for t in run["targets"] if not t["passed"])
        check(sorted(order) == want, f"failing only: {order} != {want}")
        driver.find_element(By.ID, "failing-only").click()
        driver.find_element(By.CSS_SELECTOR, 'input[name="sort"][value="name"]').click()

        footer = {td.get_attribute("data-case"): td.text.split("\n")[0]
                  for td in driver.find_elements(By.CSS_SELECTOR, "#matrix tfoot td[data-case]")}
        for c in run["catalogue"]:
            want = f'{c["passed"]}/{c["checked"]}' if c["checked"] else "—"
            check(footer[c["id"]] == want, f"pass rate of {c['id']}: {footer[c['id']]} != {want}")
        errors = console_errors(driver)
        check(not errors, f"console errors: {errors}")
        driver.save_screenshot(shot)
    finally:
        driver.quit()


def live(url, mode_file, targets_file, new_line, interval, shot):
    interval = float(interval)
    driver = browser()
    try:
        driver.get(url)
        driver.execute_script("window.sameLoad = true")

        # Read in one script: the page redraws the table when a round ends, which can happen
        # between finding a cell and reading it (a stale element), never inside a script.
        def result_of(name):
            return driver.execute_script(
                "const c = document.querySelector(arguments[0]);"
                "return c ? c.textContent.trim() : null;",
                f'#matrix tbody tr[data-target="{name}"] td.result')
        wait_for("a first round shows the buggy server failing",
                 lambda: result_of("switchable") == "fail", 4 * interval + 10)
        check(result_of("steady") == "pass", f"steady: {result_of('steady')}")
        with open(mode_file, "w") as f:
            f.write("fixed\n")
        with open(targets_file, "a") as f:
            f.write(new_line + "\n")
        # A round may be under way when the fix lands: two intervals, plus that round's own time.
        started = time.monotonic()
        wait_for("the fixed server's row turns green", lambda: result_of("switchable") == "pass",
                 2 * interval + 8)
        took = time.monotonic() - started
        check(driver.execute_script("return window.sameLoad === true"), "the page was reloaded")
        wait_for("the server added to the targets file appears", lambda: result_of("latecomer") == "pass",
                 2 * interval + 8)
        shown = driver.execute_script("""
            const row = document.querySelector('tr[data-target="switchable"]');
            return {
              kinds: Array.from(row.querySelectorAll('.history .mark'), m => m.getAttribute('class')),
              since: row.querySelector('td.since').textContent.trim(),
              status: document.getElementById('live').textContent.trim(),
            };""")
        kinds = shown["kinds"]
        check(len(kinds) >= 2, f"history strip: {len(kinds)} marks")
        check("fail" in kinds[0] and "pass" in kinds[-1], f"history oldest first: {kinds}")
        since = shown["since"]
        check(since.endswith("s") or since.endswith("m"), f"state for: {since!r}")
        status = shown["status"]
        check(status.startswith("Live: round"), f"live status {status!r}")
        errors = console_errors(driver)
        check(not errors, f"console errors: {errors}")
        driver.save_screenshot(shot)
        print(f"turned green {took:.1f} s after the fix (interval {interval:.0f} s)")
    finally:
        driver.quit()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    try:
        {"report": report, "live": live}[mode](*args)
    except AssertionError as e:
        print(f"board.py {mode}: {e}", file=sys.stderr)
        sys.exit(1)
