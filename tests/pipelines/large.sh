#!/bin/bash
# large.sh: a model over protobuf's 2 GiB limit.  ONNX can only hold it with external
# data: import loads it, export refuses stdout and writes OUT.onnx.data beside OUT.onnx.
# The weights are a sparse file, so the test costs little disk.
. "$(dirname "$0")/lib.sh"

mkdir -p big out
truncate -s $((2200 * 1024 * 1024)) big/weights.bin
$PY - <<'PY'
import onnx
from onnx import helper, TensorProto
n = 2200 * 1024 * 1024 // 4
t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[n])
t.data_location = TensorProto.EXTERNAL
for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", str(4 * n))):
    e = t.external_data.add(); e.key = k; e.value = v
g = helper.make_graph([helper.make_node("Relu", ["W"], ["y"])], "big", [],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [t])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "big/model.onnx")
PY
check "a 2.2 GiB model imports" graft-import big/model.onnx -o big.graft
expect_error "to stdout it needs external data" "over 2 GiB.*external" sh -c "graft-export big.graft > /dev/null"
check "with -o it goes to OUT.onnx.data" graft-export big.graft -o out/big.onnx
check "the data file holds the weights" cmp out/big.onnx.data big/weights.bin
check "the model points at it" $PY -c "
import onnx
m = onnx.load('out/big.onnx', load_external_data=False)
t = m.graph.initializer[0]
e = {x.key: x.value for x in t.external_data}
assert t.data_location == onnx.TensorProto.EXTERNAL, t.data_location
assert e == {'location': 'big.onnx.data', 'offset': '0', 'length': str(2200 * 1024 * 1024)}, e
"
check "and it reads back into graft" sh -c "graft-import out/big.onnx | graft-info | grep -q '2306867200 bytes'"
rm -rf big out big.graft
finish
