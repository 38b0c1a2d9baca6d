// Validate glTF / GLB files with the Khronos glTF validator (npm: gltf-validator; scripts/setup.sh installs it
// under .tools/, found through NODE_PATH). Prints one JSON report per file; exits 1 when any has errors.
//   NODE_PATH=.tools/node_modules node scripts/validate_gltf.cjs out/scene.glb out/objects/*.glb
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

async function main(files) {
  let errors = 0;
  const reports = [];
  for (const file of files) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: path.basename(file),
      maxIssues: 200,
    });
    errors += report.issues.numErrors;
    reports.push({ file, ...report });
  }
  process.stdout.write(JSON.stringify(reports) + "\n");
  return errors === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
    process.exit(2);
  },
);
