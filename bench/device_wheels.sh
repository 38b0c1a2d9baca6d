# Sourced by the bench/run_gpu*.sh device scripts: the wheels a call carries in .whl/ (made by
# scripts/prepare_device.sh) installed into /tmp/site and put on the Python path.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
