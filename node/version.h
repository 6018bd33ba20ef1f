// The interco version, from the CMake project version.
#ifndef INTERCO_NODE_VERSION_H_
#define INTERCO_NODE_VERSION_H_

namespace interco::node {

inline constexpr char kVersion[] = INTERCO_VERSION;

}  // namespace interco::node

#endif  // INTERCO_NODE_VERSION_H_
