{
  # The common sources are listed once, in native/sources.txt (CMakeLists.txt reads the same file).
  "variables": {
    "with_mlx%": "<!(node scripts/find-mlx.mjs --enabled)"
  },
  "targets": [
    {
      "target_name": "mlx_rerank",
      "sources": [
        "<!@(node -p \"require('fs').readFileSync('native/sources.txt','utf8').split(/\\r?\\n/).filter(Boolean).join(' ')\")"
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "native"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17", "-O2"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "CLANG_CXX_LIBRARY": "libc++",
        "MACOSX_DEPLOYMENT_TARGET": "13.3",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-ffp-contract=off"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
      },
      "conditions": [
        # native/nvml.cpp dlopens NVML; glibc < 2.34 keeps dlopen in libdl.
        ['OS=="linux"', { "libraries": ["-ldl"] }],
        ['with_mlx==1', {
          "sources": ["<!@(node scripts/find-mlx.mjs --sources)"],
          "defines": ["MLX_RERANK_WITH_MLX"],
          "include_dirs": ["<!@(node scripts/find-mlx.mjs --include-dirs)"],
          "cflags_cc": ["<!@(node scripts/find-mlx.mjs --cflags)"],
          "xcode_settings": {
            "OTHER_CPLUSPLUSFLAGS": ["<!@(node scripts/find-mlx.mjs --cflags)"],
            "OTHER_LDFLAGS": ["<!@(node scripts/find-mlx.mjs --ldflags)"]
          },
          "libraries": ["<!@(node scripts/find-mlx.mjs --libraries)"],
          "ldflags": ["<!@(node scripts/find-mlx.mjs --ldflags)"]
        }]
      ]
    }
  ]
}
