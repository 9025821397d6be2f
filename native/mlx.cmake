# The mlx engine in the CMake build (included by CMakeLists.txt after the mlxr_engine target exists).
# Compiled in when MLX's CMake package (>= 0.30) is found, by CMake's usual search: MLX_DIR (as a CMake
# or environment variable), CMAKE_PREFIX_PATH, the standard prefixes. The node-gyp build finds MLX
# the same way through scripts/find-mlx.mjs. -DMLX_RERANK_WITH_MLX=OFF builds the cpu engine only.
option(MLX_RERANK_WITH_MLX "Build the mlx engine when MLX is found" ON)
if(MLX_RERANK_WITH_MLX)
  find_package(MLX 0.30 CONFIG QUIET)
  if(MLX_FOUND)
    file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/sources-mlx.txt MLXR_MLX_SOURCES REGEX "^[^#]")
    list(TRANSFORM MLXR_MLX_SOURCES PREPEND ${CMAKE_SOURCE_DIR}/)
    target_sources(mlxr_engine PRIVATE ${MLXR_MLX_SOURCES})
    # MLX's target carries its include directories and requires C++20 (its headers use it).
    target_link_libraries(mlxr_engine PUBLIC mlx)
    target_compile_definitions(mlxr_engine PUBLIC MLX_RERANK_WITH_MLX)
    message(STATUS "mlx engine: MLX ${MLX_VERSION} (${MLX_DIR})")
  else()
    message(STATUS "mlx engine: MLX >= 0.30 not found (set MLX_DIR to its prefix); cpu engine only")
  endif()
endif()
