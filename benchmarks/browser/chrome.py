"""The system Chromium, driven by Selenium with the DevTools protocol: never a browser download.

``/usr/bin/chromium`` and ``chromedriver`` (``CHROMIUM`` / ``CHROMEDRIVER`` override) come from
Debian's ``chromium`` and ``chromium-driver``. :func:`ensure_chromium` installs them when we are
root and ``apt-get`` is there, as ``.ci/run`` does; otherwise it says the command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

INSTALL_COMMAND: Final = "apt-get install -y chromium chromium-driver"
APT_TIMEOUT_S: Final = 900.0
PAGE_TIMEOUT_S: Final = 30.0


def binaries(env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    chromium = env.get("CHROMIUM", "/usr/bin/chromium")
    driver = env.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return chromium, driver


def missing(env: Mapping[str, str] = os.environ) -> str | None:
    """Why the browser cannot run here (with the command that fixes it), or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: make install (it is a dev dependency)"
    chromium, driver = binaries(env)
    absent = [path for path in (chromium, driver) if not Path(path).is_file()]
    if absent:
        return f"no {' or '.join(absent)} on this machine: {INSTALL_COMMAND}"
    return None


def ensure_chromium(env: Mapping[str, str] = os.environ, *, install: bool = True) -> str | None:
    """Install Chromium from Debian's packages when missing and we may; the reason if still not."""
    reason = missing(env)
    if reason is None or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return reason
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], [*INSTALL_COMMAND.split(), "-qq"]):
        try:
            subprocess.run(
                command, env=apt_env, check=True, timeout=APT_TIMEOUT_S, capture_output=True
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            return f"{reason} (installing failed: {exc})"
    return missing(env)


@dataclass(frozen=True)
class Network:
    latency_ms: float
    download_kbps: float
    upload_kbps: float


@dataclass(frozen=True)
class Profile:
    name: str
    width: int
    height: int
    mobile: bool = False
    scale_factor: float = 1.0
    cpu_slowdown: float = 1.0
    network: Network | None = None


DESKTOP: Final = Profile("desktop", 1280, 800)
#: A phone: 390x844 CSS pixels at 3x, the CPU slowed 4x, a 4G link (60 ms, 9 / 1.5 Mbit/s).
MOBILE: Final = Profile(
    "mobile", 390, 844, mobile=True, scale_factor=3.0, cpu_slowdown=4.0,
    network=Network(latency_ms=60, download_kbps=9000, upload_kbps=1500),
)  # fmt: skip

FLAGS: Final = (
    "--headless=new",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    # A headless window counts as hidden: keep its timers and frames at full rate.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)


def emulate(driver: Any, profile: Profile) -> None:
    cdp = driver.execute_cdp_cmd
    cdp("Performance.enable", {})
    cdp("Network.enable", {})
    # The viewport itself, not the window (whose frame would take its share).
    cdp(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": profile.width,
            "height": profile.height,
            "deviceScaleFactor": profile.scale_factor,
            "mobile": profile.mobile,
        },
    )
    if profile.mobile:
        cdp("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    if profile.cpu_slowdown > 1:
        cdp("Emulation.setCPUThrottlingRate", {"rate": profile.cpu_slowdown})
    if profile.network is not None:
        net = profile.network
        cdp(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": net.latency_ms,
                "downloadThroughput": net.download_kbps * 1000 / 8,
                "uploadThroughput": net.upload_kbps * 1000 / 8,
            },
        )


@contextlib.contextmanager
def chromium(profile: Profile = DESKTOP, env: Mapping[str, str] = os.environ) -> Iterator[Any]:
    """A fresh Chromium (new profile directory: cold cache) with ``profile``'s emulation.

    ``driver.get`` returns at once (page load strategy "none"): every wait is the caller's,
    on what the page reports, each with its own timeout.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing(env)
    if reason is not None:
        raise RuntimeError(reason)
    chromium_path, driver_path = binaries(env)
    profile_dir = tempfile.mkdtemp(prefix="wsbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    options.page_load_strategy = "none"
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={profile.width},{profile.height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_script_timeout(PAGE_TIMEOUT_S)
        emulate(driver, profile)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """The page's console errors and uncaught exceptions since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def memory(driver: Any) -> dict[str, float]:
    """JS heap in use and DOM counts after a garbage collection (DevTools Performance domain)."""
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    values = {m["name"]: float(m["value"]) for m in metrics}
    elements = driver.execute_script("return document.getElementsByTagName('*').length")
    return {
        "heap_mb": values.get("JSHeapUsedSize", 0.0) / 1e6,
        "dom_nodes": values.get("Nodes", 0.0),
        "dom_elements": float(elements),
    }
