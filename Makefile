# Developer targets.  The README's two quick-start commands need none of this.
PYTHON ?= python3

.PHONY: build wheel sdist test engine-test sanitize sanitize-python fault stress stress-asan conformance bench bench-quick bench-tls bench-callgrind clean

build:                 ## build the extension in place
	$(PYTHON) setup.py -q build_ext --inplace

wheel:                 ## a manylinux wheel per supported Python here, in wheelhouse/ (each installed and run in a fresh venv)
	.ci/wheel

sdist:                 ## the source distribution, in dist/
	$(PYTHON) -m pip install -q build && $(PYTHON) -m build --sdist

test: build            ## the whole suite
	$(PYTHON) -m pytest

engine-test:           ## the engine's C unit tests, plain build
	$(MAKE) -C _core/tests run

sanitize:              ## the engine's C unit tests under TSan, then ASan+UBSan (leak checks on)
	$(MAKE) -C _core/tests run SANITIZE=thread
	ASAN_OPTIONS=detect_leaks=1 $(MAKE) -C _core/tests run SANITIZE=address

sanitize-python:       ## the Python suite against an ASan+UBSan build of the extension
	AIOLOOP_SANITIZE=address $(PYTHON) setup.py -q build_ext --inplace --force
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	    $(PYTHON) -m pytest tests/test_loop.py tests/test_streams.py tests/test_engines.py tests/test_tls_bytepath.py \
	    -k "not emfile and not fork"
	$(PYTHON) setup.py -q build_ext --inplace --force

fault:                 ## every fault site walked: the engine's C walk (deep) and the Python fault tests, under ASan+UBSan
	AIO_FAULT_MAX=64 ASAN_OPTIONS=detect_leaks=1 $(MAKE) -C _core/tests run SANITIZE=address
	AIOLOOP_SANITIZE=address $(PYTHON) setup.py -q build_ext --inplace --force
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	    AIOLOOP_FAULT_DEPTH=30 $(PYTHON) -m pytest tests/test_engine_faults.py tests/test_engines.py -p no:cacheprovider
	$(PYTHON) setup.py -q build_ext --inplace --force

stress: build          ## the stress suite at full size on aioloop's engines, asyncio and uvloop (docs/stress.md)
	AIOLOOP_STRESS=full $(PYTHON) -m pytest tests/stress -p no:cacheprovider

stress-asan:           ## the stress suite (CI size) against an ASan+UBSan build with debug assertions
	AIOLOOP_SANITIZE=address $(PYTHON) setup.py -q build_ext --inplace --force
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
	    AIOLOOP_STRESS_LOOPS=uring,threads $(PYTHON) -m pytest tests/stress -p no:cacheprovider
	$(PYTHON) setup.py -q build_ext --inplace --force

conformance: build     ## CPython's asyncio test mixins against aioloop
	$(PYTHON) tests/conformance/run.py -v

bench: build           ## the full benchmark run (about 45 minutes on 2 CPUs), written into docs/benchmarks.md
	$(PYTHON) -m bench --docs

bench-quick: build     ## about five minutes
	$(PYTHON) -m bench --quick

bench-tls: build       ## the TLS part only (HTTPS, TLS echo, new TLS connections, each beside its plain twin)
	$(PYTHON) -m bench --only tls

bench-callgrind: build ## instructions per operation of the loop-overhead workloads (valgrind)
	$(PYTHON) -m bench --only callgrind

clean:
	rm -rf build _core/tests/build aioloop/*.so wheelhouse dist
