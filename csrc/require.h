// Argument checks of the host API, turned into std::invalid_argument ("segpost.X: message").
// A message is built only when its check fails: checks run every round, and a round allocates
// nothing. Give a literal, or a lambda building the message from values.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

namespace segpost {

template <class Message>
void require_argument(bool ok, const char* who, Message&& message) {
  if (ok) return;
  if constexpr (std::is_invocable_v<Message>) {
    throw std::invalid_argument(std::string(who) + ": " + message());
  } else {
    throw std::invalid_argument(std::string(who) + ": " + message);
  }
}

}  // namespace segpost
